-- stampede: every client asks once for user 1, whose credential has expired
-- (pgbench -t 1 -D realm=..., -M prepared: :realm becomes a text parameter)
SELECT turnstile.credential_get(1, :realm);
