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
-- its windows end per after they start, a day counting 24 hours, as
-- rate_limit counts them: not a calendar day of the session's time zone,
-- which is 23 hours on the day daylight saving time starts
SET TimeZone = 'EST5EDT,M3.2.0,M11.1.0';
INSERT INTO turnstile.rate_limit (key, window_start, count, max, per, allowed, used_at)
	VALUES ('dst', '2026-03-08 00:00:00+00', 1, 5, '1 day', true, now());
SELECT reset_at, reset_at = '2026-03-09 00:00:00+00' AS after_24_hours
  FROM turnstile.rate_limits WHERE key = 'dst';
RESET TimeZone;
DELETE FROM turnstile.rate_limit WHERE key = 'dst';

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
-- a window kept from a shorter per, with a per of 292,000 years, would end
-- past the last timestamp: refused, and nothing is counted
SELECT allowed, count FROM turnstile.rate_limit('far', 10, '1000 days');
SELECT * FROM turnstile.rate_limit('far', 10, '106751991 days');
\echo :LAST_ERROR_SQLSTATE
SELECT count, per FROM turnstile.rate_limit WHERE key = 'far';
DELETE FROM turnstile.rate_limit WHERE key = 'far';
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

--
-- A key that has its row is decided without SQL.  A table that was given a
-- trigger makes the calls go through SQL again, so that it fires, with the
-- same decisions; the same for the idempotency keys of counter_incr_once,
-- whose result is recorded directly.  Several calls of one key in one
-- transaction count on the key's latest row, the transaction's own.
--
CREATE TABLE rate_audit (key text, count bigint, allowed boolean);
CREATE FUNCTION rate_audit() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	INSERT INTO rate_audit VALUES (NEW.key, NEW.count, NEW.allowed);
	RETURN NEW;
END $$;
SELECT allowed, count FROM turnstile.rate_limit('audited', 2, '1000 days');
CREATE TRIGGER rate_audit AFTER UPDATE ON turnstile.rate_limit
	FOR EACH ROW EXECUTE FUNCTION rate_audit();
BEGIN;
SELECT allowed, count FROM turnstile.rate_limit('audited', 2, '1000 days');
SELECT allowed, count FROM turnstile.rate_limit('audited', 2, '1000 days');
COMMIT;
SELECT key, count, allowed FROM rate_audit ORDER BY count, allowed;
DROP TRIGGER rate_audit ON turnstile.rate_limit;
-- and without it, the direct path again, which the audit does not see
BEGIN;
SELECT allowed, count FROM turnstile.rate_limit('audited', 3, '1000 days');
SELECT allowed, count FROM turnstile.rate_limit('audited', 3, '1000 days');
COMMIT;
SELECT count(*) AS audited FROM rate_audit;
SELECT key, count, max, remaining FROM turnstile.rate_limits WHERE key = 'audited';

SELECT turnstile.counter_create('audited_once', 0);
CREATE FUNCTION once_audit() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	INSERT INTO rate_audit VALUES (NEW.key, NEW.result, NULL);
	RETURN NEW;
END $$;
CREATE TRIGGER once_audit AFTER UPDATE ON turnstile.idempotency_key
	FOR EACH ROW EXECUTE FUNCTION once_audit();
SELECT turnstile.counter_incr_once('audited_once', 5, 'audited-1'),
       turnstile.counter_incr_once('audited_once', 5, 'audited-1');
DROP TRIGGER once_audit ON turnstile.idempotency_key;
SELECT turnstile.counter_incr_once('audited_once', 5, 'audited-2'),
       turnstile.counter_incr_once('audited_once', 5, 'audited-2');
SELECT key, count AS result FROM rate_audit WHERE allowed IS NULL ORDER BY key;
SELECT key, result FROM turnstile.idempotency_key WHERE key LIKE 'audited-%' ORDER BY key;
SELECT turnstile.counter_drop('audited_once');
DELETE FROM turnstile.idempotency_key WHERE key LIKE 'audited-%';
DELETE FROM turnstile.rate_limit WHERE key = 'audited';
DROP TABLE rate_audit;
DROP FUNCTION rate_audit(), once_audit();
