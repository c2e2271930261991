-- turnstile: one call of a rate limit on one of 10,000 keys, at random, with
-- a limit no client reaches (what is measured is the counting)
\set id random(1, 10000)
SELECT turnstile.rate_limit('k:' || :id::text, 1000000, '1 second');
