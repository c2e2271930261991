-- stampede: every client asks once for user 1, whose credential has expired
-- (pgbench -t 1 -D realm=..., -M prepared: :realm becomes a text parameter).
-- Each client first warms its new backend up (library, caches) on user 2,
-- whose credential is fresh, and waits for the others to be ready; the
-- stampede call records its own duration.
SELECT turnstile.credential_get(2, :realm);
\sleep 1 s
INSERT INTO stampede_wait
	SELECT extract(epoch FROM pg_catalog.clock_timestamp() - statement_timestamp()) * 1000
	  FROM (SELECT turnstile.credential_get(1, :realm)) AS called;
