--
-- counter_errors: every error a counter call can raise in one session, with
-- its SQLSTATE (echoed after each failing statement), and proof that the
-- failed call changed nothing.
--
\set SHOW_CONTEXT never

SELECT turnstile.counter_set('e', 10);
SELECT count(*) AS counters_before FROM turnstile.counters \gset

--
-- NULL arguments raise 22004 and name the argument; no function returns a
-- silent NULL for them.
--
SELECT turnstile.counter_create(NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT turnstile.counter_create('e_new', NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT turnstile.counter_create('e_new', 0, NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT turnstile.counter_incr(NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT turnstile.counter_incr('e', NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT turnstile.counter_incr('e_new', NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT turnstile.counter_incr(NULL, 1, 10);
\echo :LAST_ERROR_SQLSTATE
SELECT turnstile.counter_incr('e', NULL, 10);
\echo :LAST_ERROR_SQLSTATE
SELECT turnstile.counter_incr('e', 1, NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT turnstile.counter_decr(NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT turnstile.counter_decr('e', NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM turnstile.counter_cas(NULL, 10, 1);
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM turnstile.counter_cas('e', NULL, 1);
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM turnstile.counter_cas('e', 10, NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT turnstile.counter_get(NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT turnstile.counter_set(NULL, 1);
\echo :LAST_ERROR_SQLSTATE
SELECT turnstile.counter_set('e', NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM turnstile.counter_info(NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT turnstile.counter_drop(NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT turnstile.counter_lock_key(NULL);
\echo :LAST_ERROR_SQLSTATE
-- nothing changed, nothing was created
SELECT value, version FROM turnstile.counter_info('e');
SELECT count(*) - :counters_before AS counters_added FROM turnstile.counters;

--
-- Names must have 1 to 200 characters (characters, not bytes): 22023.
--
SELECT turnstile.counter_incr('');
\echo :LAST_ERROR_SQLSTATE
SELECT turnstile.counter_incr(repeat('x', 201));
\echo :LAST_ERROR_SQLSTATE
SELECT turnstile.counter_incr(repeat('é', 201));
\echo :LAST_ERROR_SQLSTATE
SELECT turnstile.counter_create('');
\echo :LAST_ERROR_SQLSTATE
SELECT turnstile.counter_create(repeat('x', 201), 5, 4);
\echo :LAST_ERROR_SQLSTATE
SELECT turnstile.counter_decr(repeat('x', 201));
\echo :LAST_ERROR_SQLSTATE
SELECT turnstile.counter_incr('', 1, 0);
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM turnstile.counter_cas(repeat('x', 201), 0, 1);
\echo :LAST_ERROR_SQLSTATE
SELECT turnstile.counter_set('', 1);
\echo :LAST_ERROR_SQLSTATE
SELECT turnstile.counter_get('');
\echo :LAST_ERROR_SQLSTATE
SELECT turnstile.counter_get(repeat('x', 201));
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM turnstile.counter_info('');
\echo :LAST_ERROR_SQLSTATE
SELECT turnstile.counter_drop(repeat('x', 201));
\echo :LAST_ERROR_SQLSTATE
SELECT turnstile.counter_lock_key('');
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) - :counters_before AS counters_added FROM turnstile.counters;

--
-- slots must be between 1 and 1024: 22023, and no counter is created.
--
SELECT turnstile.counter_create('e_slots', 0, 0);
\echo :LAST_ERROR_SQLSTATE
SELECT turnstile.counter_create('e_slots', 0, -1);
\echo :LAST_ERROR_SQLSTATE
SELECT turnstile.counter_create('e_slots', 0, 1025);
\echo :LAST_ERROR_SQLSTATE
SELECT turnstile.counter_get('e_slots') IS NULL AS not_created;
-- the bad slots count is refused even when the counter exists already
SELECT turnstile.counter_create('e', 0, 0);
\echo :LAST_ERROR_SQLSTATE
-- 1024 is the largest allowed
SELECT turnstile.counter_create('e_slots', 5, 1024);
SELECT value, slots FROM turnstile.counter_info('e_slots');
SELECT turnstile.counter_drop('e_slots');

--
-- Overflow beyond the bigint range raises 22003 and changes nothing.
--
-- reaching the upper limit exactly is fine ...
SELECT turnstile.counter_set('e_big', 9223372036854775806);
SELECT turnstile.counter_incr('e_big');
SELECT turnstile.counter_incr('e_big', 0);
SELECT version AS big_version FROM turnstile.counter_info('e_big') \gset
-- ... going past it is not
SELECT turnstile.counter_incr('e_big');
\echo :LAST_ERROR_SQLSTATE
SELECT turnstile.counter_incr('e_big', 9223372036854775807);
\echo :LAST_ERROR_SQLSTATE
SELECT turnstile.counter_decr('e_big', -1);
\echo :LAST_ERROR_SQLSTATE
SELECT turnstile.counter_incr('e_big', 1, 9223372036854775807);
\echo :LAST_ERROR_SQLSTATE
SELECT value, version = :big_version AS version_unchanged
  FROM turnstile.counter_info('e_big');
-- and from the top, the whole range down is reachable in one step
SELECT turnstile.counter_incr('e_big', -9223372036854775807);
SELECT turnstile.counter_incr('e_big', -9223372036854775807);
SELECT turnstile.counter_incr('e_big', -1);

-- the same at the lower limit
SELECT turnstile.counter_set('e_small', -9223372036854775807);
SELECT turnstile.counter_decr('e_small');
SELECT version AS small_version FROM turnstile.counter_info('e_small') \gset
SELECT turnstile.counter_decr('e_small');
\echo :LAST_ERROR_SQLSTATE
SELECT turnstile.counter_incr('e_small', -1);
\echo :LAST_ERROR_SQLSTATE
SELECT turnstile.counter_incr('e_small', -9223372036854775808);
\echo :LAST_ERROR_SQLSTATE
SELECT turnstile.counter_incr('e_small', -1, -9223372036854775808);
\echo :LAST_ERROR_SQLSTATE
SELECT value, version = :small_version AS version_unchanged
  FROM turnstile.counter_info('e_small');
-- the largest step up from the bottom lands on -1
SELECT turnstile.counter_incr('e_small', 9223372036854775807);

-- counter_decr cannot negate the smallest bigint, whatever the value
SELECT turnstile.counter_decr('e', -9223372036854775808);
\echo :LAST_ERROR_SQLSTATE
SELECT turnstile.counter_decr('e_new', -9223372036854775808);
\echo :LAST_ERROR_SQLSTATE
SELECT value, version FROM turnstile.counter_info('e');
SELECT turnstile.counter_get('e_new') IS NULL AS not_created;

-- The limits themselves are fine values for create, set and cas.
SELECT turnstile.counter_create('e_max', 9223372036854775807);
SELECT turnstile.counter_create('e_min', -9223372036854775808);
SELECT applied, value FROM turnstile.counter_cas('e_max', 9223372036854775807, -9223372036854775808);
SELECT applied, value FROM turnstile.counter_cas('e_min', -9223372036854775808, 9223372036854775807);
SELECT turnstile.counter_decr('e_max', 9223372036854775807);
\echo :LAST_ERROR_SQLSTATE
SELECT turnstile.counter_incr('e_min', 1);
\echo :LAST_ERROR_SQLSTATE
SELECT name, value FROM turnstile.counters WHERE name IN ('e_max', 'e_min') ORDER BY name;

-- An overflow inside a transaction aborts it; earlier work rolls back too.
SELECT turnstile.counter_create('e_top', 9223372036854775807);
BEGIN;
SELECT turnstile.counter_incr('e', 5);
SELECT turnstile.counter_incr('e_top', 1);
\echo :LAST_ERROR_SQLSTATE
SELECT turnstile.counter_get('e');
\echo :LAST_ERROR_SQLSTATE
ROLLBACK;
SELECT value, version FROM turnstile.counter_info('e');

-- In a savepoint, only the work after the savepoint is lost.
BEGIN;
SELECT turnstile.counter_incr('e', 5);
SAVEPOINT s;
SELECT turnstile.counter_incr('e_top', 1);
\echo :LAST_ERROR_SQLSTATE
ROLLBACK TO SAVEPOINT s;
SELECT turnstile.counter_incr('e', 1);
COMMIT;
SELECT value, version FROM turnstile.counter_info('e');
SELECT turnstile.counter_set('e', 10);

-- A read-only transaction can read counters but not change them (25006).
BEGIN READ ONLY;
SELECT turnstile.counter_get('e'), (SELECT count(*) FROM turnstile.counter_info('e')) AS info_rows;
SELECT turnstile.counter_incr('e');
\echo :LAST_ERROR_SQLSTATE
ROLLBACK;
BEGIN READ ONLY;
SELECT turnstile.counter_create('e_readonly');
\echo :LAST_ERROR_SQLSTATE
ROLLBACK;
SELECT turnstile.counter_get('e'), turnstile.counter_get('e_readonly') IS NULL AS not_created;

--
-- The conditional put: a mismatch raises 40001 with the expected and the
-- current value in the DETAIL, and changes nothing.
--
SELECT version AS e_version FROM turnstile.counter_info('e') \gset
SELECT turnstile.counter_incr('e', 1, 11);
\echo :LAST_ERROR_SQLSTATE
SELECT turnstile.counter_incr('e', -1, -10);
\echo :LAST_ERROR_SQLSTATE
SELECT value, version = :e_version AS version_unchanged
  FROM turnstile.counter_info('e');
-- the current value from the DETAIL is the one to retry with
SELECT turnstile.counter_incr('e', 1, 10);

-- A missing counter counts as 0: any other expected fails, and the counter
-- is still absent afterwards.
SELECT turnstile.counter_incr('e_absent', 1, 5);
\echo :LAST_ERROR_SQLSTATE
SELECT turnstile.counter_get('e_absent') IS NULL AS still_absent,
       (SELECT count(*) FROM turnstile.counter_info('e_absent')) AS info_rows;

-- Names reach messages verbatim: format directives and quotes are not
-- interpreted.
SELECT turnstile.counter_set('%s%n "it''s"', 1);
SELECT turnstile.counter_incr('%s%n "it''s"', 1, 2);
\echo :LAST_ERROR_SQLSTATE
SELECT turnstile.counter_incr('%s%n "it''s"', 9223372036854775807);
\echo :LAST_ERROR_SQLSTATE
SELECT turnstile.counter_decr('%s%n "it''s"', -9223372036854775808);
\echo :LAST_ERROR_SQLSTATE
SELECT turnstile.counter_get('%s%n "it''s"');

-- Clean up what this file created.
SELECT name, turnstile.counter_drop(name) FROM turnstile.counters
 WHERE name IN ('e', 'e_big', 'e_small', 'e_max', 'e_min', 'e_top',
                '%s%n "it''s"')
 ORDER BY name;
