-- refresh cost: throw the credential away, then make credential_get log in
-- again (pgbench -D realm=..., -M prepared: :realm becomes a text parameter)
\set uid random(1, 1000)
SELECT turnstile.credential_invalidate(:uid, :realm);
SELECT turnstile.credential_get(:uid, :realm);
