--
-- counter_once: counter_incr_once, an increment that a retry with the same
-- idempotency key cannot apply twice; its errors, NULLs, the window and the
-- lazy removal of old keys.
--
\set SHOW_CONTEXT never
\set VERBOSITY terse

SELECT turnstile.counter_create('once', 100);

-- the first call applies and returns the new value; a retry returns it again
SELECT turnstile.counter_incr_once('once', 5, 'payment-1');
SELECT turnstile.counter_incr_once('once', 5, 'payment-1');
SELECT turnstile.counter_get('once');
-- another key applies again; the first key still answers with its result
SELECT turnstile.counter_incr_once('once', 5, 'payment-2');
SELECT turnstile.counter_incr_once('once', 5, 'payment-1');
SELECT turnstile.counter_get('once');
SELECT key, counter, delta, result FROM turnstile.idempotency_key ORDER BY key;

-- the same key for another increment is refused, and changes nothing
SELECT turnstile.counter_incr_once('once', 6, 'payment-1');
\echo :LAST_ERROR_SQLSTATE
SELECT turnstile.counter_incr_once('other', 5, 'payment-1');
\echo :LAST_ERROR_SQLSTATE
\set VERBOSITY default
SELECT turnstile.counter_incr_once('once', -5, 'payment-2');
\set VERBOSITY terse
SELECT turnstile.counter_get('once'), turnstile.counter_get('other');

-- twice in one transaction: once
BEGIN;
SELECT turnstile.counter_incr_once('once', 1, 'tx-1');
SELECT turnstile.counter_incr_once('once', 1, 'tx-1');
COMMIT;
SELECT turnstile.counter_get('once');

-- a rolled-back call leaves no key: the retry applies
BEGIN;
SELECT turnstile.counter_incr_once('once', 10, 'rolled-back');
ROLLBACK;
SELECT count(*) FROM turnstile.idempotency_key WHERE key = 'rolled-back';
SELECT turnstile.counter_incr_once('once', 10, 'rolled-back');
SELECT turnstile.counter_get('once');

-- a call that fails records nothing either
SELECT turnstile.counter_create('full', 9223372036854775806);
SELECT turnstile.counter_incr_once('full', 2, 'too-much');
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) FROM turnstile.idempotency_key WHERE key = 'too-much';
SELECT turnstile.counter_incr_once('full', 1, 'too-much-1');

-- a missing counter is created at 0 first, as by counter_incr
SELECT turnstile.counter_incr_once('new', 7, 'new-1');
-- hot counters
SELECT turnstile.counter_create('hot_once', 0, 4);
SELECT turnstile.counter_incr_once('hot_once', 3, 'hot-1');
SELECT turnstile.counter_incr_once('hot_once', 3, 'hot-1');
SELECT turnstile.counter_get('hot_once');

-- NULLs and bad names
SELECT turnstile.counter_incr_once(NULL, 1, 'k');
\echo :LAST_ERROR_SQLSTATE
SELECT turnstile.counter_incr_once('once', NULL, 'k');
\echo :LAST_ERROR_SQLSTATE
SELECT turnstile.counter_incr_once('once', 1, NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT turnstile.counter_incr_once('once', 1, '');
\echo :LAST_ERROR_SQLSTATE
SELECT turnstile.counter_incr_once('once', 1, repeat('k', 201));
\echo :LAST_ERROR_SQLSTATE
SELECT turnstile.counter_incr_once('', 1, 'k');
\echo :LAST_ERROR_SQLSTATE

-- read-only transactions change nothing
BEGIN READ ONLY;
SELECT turnstile.counter_incr_once('once', 1, 'read-only');
\echo :LAST_ERROR_SQLSTATE
ROLLBACK;

-- the window: an interval, positive, without months
SHOW turnstile.idempotency_window;
SET turnstile.idempotency_window = '90 minutes';
SHOW turnstile.idempotency_window;
SET turnstile.idempotency_window = 'banana';
\echo :LAST_ERROR_SQLSTATE
SET turnstile.idempotency_window = '0';
\echo :LAST_ERROR_SQLSTATE
SET turnstile.idempotency_window = '-1 hour';
\echo :LAST_ERROR_SQLSTATE
SET turnstile.idempotency_window = '1 month';
\echo :LAST_ERROR_SQLSTATE
-- at most 3650 days, however it is written
SET turnstile.idempotency_window = '87600 hours';
SHOW turnstile.idempotency_window;
SET turnstile.idempotency_window = '87601 hours';
\echo :LAST_ERROR_SQLSTATE
SET turnstile.idempotency_window = '3650 days 1 second';
\echo :LAST_ERROR_SQLSTATE
SET turnstile.idempotency_window = '3650 days 2562047788 hours';
\echo :LAST_ERROR_SQLSTATE
SET turnstile.idempotency_window = '90 minutes';
SHOW turnstile.idempotency_window;

-- a key older than the window is new again: the retry applies
UPDATE turnstile.idempotency_key SET used_at = used_at - interval '2 hours'
 WHERE key = 'payment-2';
SELECT turnstile.counter_get('once');
SELECT turnstile.counter_incr_once('once', 5, 'payment-2');
SELECT turnstile.counter_get('once');
SELECT key, result, used_at > now() - interval '1 minute' AS renewed
  FROM turnstile.idempotency_key WHERE key = 'payment-2';

-- old keys go lazily: a backend's first call, and every 128th after it,
-- removes up to 256 expired keys, oldest first
UPDATE turnstile.idempotency_key SET used_at = used_at - interval '3 hours'
 WHERE key IN ('payment-1', 'tx-1', 'rolled-back', 'too-much-1', 'new-1');
SELECT count(*) AS expired FROM turnstile.idempotency_key
 WHERE used_at < now() - interval '90 minutes';
SELECT count(*) FROM (SELECT turnstile.counter_incr_once('once', 1, 'sweep-' || i)
                        FROM generate_series(1, 128) i) calls;
SELECT count(*) AS expired FROM turnstile.idempotency_key
 WHERE used_at < now() - interval '90 minutes';
SELECT count(*) AS kept, count(*) FILTER (WHERE key LIKE 'sweep-%') AS new
  FROM turnstile.idempotency_key;

-- a REPEATABLE READ transaction sweeps at most once (each sweep is a
-- subtransaction there): of 300 expired keys, 256 calls (two sweeps due, of
-- up to 256 keys each) remove 256
BEGIN ISOLATION LEVEL REPEATABLE READ;
INSERT INTO turnstile.idempotency_key (key, counter, delta, result, used_at)
SELECT 'rr-old-' || i, 'once', 1, i, now() - interval '1 day'
  FROM generate_series(1, 300) i;
SELECT count(*) FROM (SELECT turnstile.counter_incr_once('once', 1, 'rr-' || i)
                        FROM generate_series(1, 256) i) calls;
SELECT count(*) AS expired_left FROM turnstile.idempotency_key WHERE key LIKE 'rr-old-%';
COMMIT;
RESET turnstile.idempotency_window;

SELECT turnstile.counter_drop(name)
  FROM unnest(ARRAY['once', 'other', 'full', 'new', 'hot_once']) name;
DELETE FROM turnstile.idempotency_key;
