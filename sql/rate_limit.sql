--
-- rate_limit: fixed windows aligned to the Unix epoch, counted in one row
-- per key and reset in place; the view, the sweep, errors and NULLs, and
-- counts at the bigint limits.  Windows of 1000 days keep the test inside
-- one window whenever it runs; a later window is made by moving the stored
-- one back.
--
\set SHOW_CONTEXT never
\set VERBOSITY terse

-- three allowed, then refused; only what is allowed is counted
SELECT allowed, count, remaining, reset_at > now() AND reset_at <= now() + interval '1000 days' AS resets
  FROM turnstile.rate_limit('api:alice', 3, '1000 days')
UNION ALL SELECT allowed, count, remaining, NULL FROM turnstile.rate_limit('api:alice', 3, '1000 days')
UNION ALL SELECT allowed, count, remaining, NULL FROM turnstile.rate_limit('api:alice', 3, '1000 days')
UNION ALL SELECT allowed, count, remaining, NULL FROM turnstile.rate_limit('api:alice', 3, '1000 days')
UNION ALL SELECT allowed, count, remaining, NULL FROM turnstile.rate_limit('api:alice', 3, '1000 days');

-- the window is aligned to the Unix epoch
SELECT extract(epoch FROM window_start)::numeric % (1000 * 86400) = 0 AS aligned,
       reset_at = window_start + interval '1000 days' AS reset_at_end
  FROM turnstile.rate_limits WHERE key = 'api:alice';

-- a cost: counted only when all of it fits
SELECT allowed, count, remaining FROM turnstile.rate_limit('api:bob', 10, '1000 days', 4);
SELECT allowed, count, remaining FROM turnstile.rate_limit('api:bob', 10, '1000 days', 4);
SELECT allowed, count, remaining FROM turnstile.rate_limit('api:bob', 10, '1000 days', 4);
SELECT allowed, count, remaining FROM turnstile.rate_limit('api:bob', 10, '1000 days', 2);
-- a cost of 0 asks without counting; a cost over max is never allowed
SELECT allowed, count, remaining FROM turnstile.rate_limit('api:bob', 10, '1000 days', 0);
SELECT allowed, count, remaining FROM turnstile.rate_limit('api:carol', 10, '1000 days', 11);
-- max 0 allows nothing but a cost of 0
SELECT allowed, count, remaining FROM turnstile.rate_limit('api:dave', 0, '1000 days');
SELECT allowed, count, remaining FROM turnstile.rate_limit('api:dave', 0, '1000 days', 0);

-- the next window resets the row in place
UPDATE turnstile.rate_limit SET window_start = window_start - interval '1000 days'
 WHERE key = 'api:alice';
SELECT count, remaining FROM turnstile.rate_limits WHERE key = 'api:alice';
SELECT allowed, count, remaining FROM turnstile.rate_limit('api:alice', 3, '1000 days');
SELECT count(*) FROM turnstile.rate_limit WHERE key = 'api:alice';

-- it commits or rolls back with the caller
BEGIN;
SELECT allowed, count FROM turnstile.rate_limit('api:erin', 1, '1000 days');
ROLLBACK;
SELECT allowed, count FROM turnstile.rate_limit('api:erin', 1, '1000 days');
SELECT allowed, count FROM turnstile.rate_limit('api:erin', 1, '1000 days');

-- the bigint limits: no overflow, whatever the count and the cost
SELECT allowed, count, remaining
  FROM turnstile.rate_limit('big', 9223372036854775807, '1000 days', 9223372036854775806);
SELECT allowed, count, remaining
  FROM turnstile.rate_limit('big', 9223372036854775807, '1000 days', 9223372036854775807);
SELECT allowed, count, remaining FROM turnstile.rate_limit('big', 9223372036854775807, '1000 days');
SELECT allowed, count, remaining FROM turnstile.rate_limit('big', 9223372036854775807, '1000 days');
-- a smaller max for a key counts what is there against it
SELECT allowed, count, remaining FROM turnstile.rate_limit('big', 5, '1000 days');

-- the view
SELECT key, max, per, count, remaining FROM turnstile.rate_limits ORDER BY key;

-- errors, which change nothing
SELECT * FROM turnstile.rate_limit(NULL, 1, '1 second');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM turnstile.rate_limit('k', NULL, '1 second');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM turnstile.rate_limit('k', 1, NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM turnstile.rate_limit('k', 1, '1 second', NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM turnstile.rate_limit('', 1, '1 second');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM turnstile.rate_limit(repeat('k', 201), 1, '1 second');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM turnstile.rate_limit('k', -1, '1 second');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM turnstile.rate_limit('k', 1, '1 second', -1);
\echo :LAST_ERROR_SQLSTATE
\set VERBOSITY default
SELECT * FROM turnstile.rate_limit('k', 1, '1 month');
\set VERBOSITY terse
SELECT * FROM turnstile.rate_limit('k', 1, '0');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM turnstile.rate_limit('k', 1, '-1 second');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM turnstile.rate_limit('k', 1, '1 day -1 second');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM turnstile.rate_limit('k', 1, '2147483647 days');
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) FROM turnstile.rate_limit WHERE key = 'k';
BEGIN READ ONLY;
SELECT * FROM turnstile.rate_limit('k', 1, '1 second');
\echo :LAST_ERROR_SQLSTATE
ROLLBACK;

-- the sweep: keys not used for older_than go
UPDATE turnstile.rate_limit SET used_at = used_at - interval '2 days'
 WHERE key IN ('api:carol', 'api:dave');
SELECT turnstile.rate_limit_sweep('1 day');
SELECT key FROM turnstile.rate_limits ORDER BY key;
SELECT turnstile.rate_limit_sweep(NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT turnstile.rate_limit_sweep('-1 day');
\echo :LAST_ERROR_SQLSTATE
BEGIN READ ONLY;
SELECT turnstile.rate_limit_sweep('1 day');
\echo :LAST_ERROR_SQLSTATE
ROLLBACK;
SELECT turnstile.rate_limit_sweep('0');
SELECT count(*) FROM turnstile.rate_limits;
