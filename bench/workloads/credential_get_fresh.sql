-- turnstile: a fresh hit for one of 1,000 logged-in users, at random
\set uid random(1, 1000)
SELECT turnstile.credential_get(:uid, 'fresh');
