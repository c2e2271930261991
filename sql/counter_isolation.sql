--
-- counter_isolation: the setting turnstile.isolation in one session.
--
-- What each mode does when other transactions interfere is shown by the
-- isolation specs (specs/counter_snapshot_policy.spec); this file covers the
-- setting itself and what one session sees of its own work.
--
\set SHOW_CONTEXT never

--
-- The setting can be given before the library is loaded (as a placeholder)
-- and keeps its value once a turnstile function loads the library.
--
SET turnstile.isolation = 'repeatable read';
SELECT turnstile.counter_get('iso') IS NULL AS absent;
SHOW turnstile.isolation;
RESET turnstile.isolation;

-- Its default, and its definition.
SHOW turnstile.isolation;
SELECT name, setting, boot_val, reset_val, context, vartype, enumvals
  FROM pg_settings
 WHERE name = 'turnstile.isolation';

--
-- Every valid value can be set, in any case; others are refused (22023).
--
SET turnstile.isolation = 'repeatable read';
SHOW turnstile.isolation;
SET turnstile.isolation = 'serializable';
SHOW turnstile.isolation;
SET turnstile.isolation = 'read committed';
SHOW turnstile.isolation;
SET turnstile.isolation = 'REPEATABLE READ';
SHOW turnstile.isolation;
SELECT set_config('turnstile.isolation', 'Serializable', false);
SET turnstile.isolation TO DEFAULT;
SHOW turnstile.isolation;
SET turnstile.isolation = 'snapshot';
\echo :LAST_ERROR_SQLSTATE
SET turnstile.isolation = 'repeatable_read';
\echo :LAST_ERROR_SQLSTATE
SET turnstile.isolation = '';
\echo :LAST_ERROR_SQLSTATE
SHOW turnstile.isolation;

--
-- The turnstile.* prefix is reserved once the library is loaded: other
-- names in it cannot be created as placeholders (42602).
--
SET turnstile.bogus = 1;
\echo :LAST_ERROR_SQLSTATE
SELECT set_config('turnstile.isolaton', 'serializable', false);
\echo :LAST_ERROR_SQLSTATE
SHOW turnstile.bogus;
\echo :LAST_ERROR_SQLSTATE
SELECT current_setting('turnstile.bogus', true) IS NULL AS bogus_unset;

--
-- SET LOCAL lasts until the end of the transaction; a SET inside a
-- transaction that rolls back is undone.
--
BEGIN;
SET LOCAL turnstile.isolation = 'repeatable read';
SHOW turnstile.isolation;
COMMIT;
SHOW turnstile.isolation;
BEGIN;
SET LOCAL turnstile.isolation = 'serializable';
SHOW turnstile.isolation;
ROLLBACK;
SHOW turnstile.isolation;
BEGIN;
SET turnstile.isolation = 'repeatable read';
ROLLBACK;
SHOW turnstile.isolation;
-- SET LOCAL over a session value reverts to the session value
SET turnstile.isolation = 'repeatable read';
BEGIN;
SET LOCAL turnstile.isolation = 'read committed';
SHOW turnstile.isolation;
COMMIT;
SHOW turnstile.isolation;
RESET turnstile.isolation;

--
-- "serializable" refuses to act (25000) unless the transaction is
-- SERIALIZABLE, for readers and writers alike, and changes nothing.
--
SELECT turnstile.counter_set('iso', 10);
SET turnstile.isolation = 'serializable';
SELECT turnstile.counter_incr('iso');
\echo :LAST_ERROR_SQLSTATE
SELECT turnstile.counter_get('iso');
\echo :LAST_ERROR_SQLSTATE
SELECT turnstile.counter_decr('iso');
\echo :LAST_ERROR_SQLSTATE
SELECT turnstile.counter_incr('iso', 1, 10);
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM turnstile.counter_cas('iso', 10, 11);
\echo :LAST_ERROR_SQLSTATE
SELECT turnstile.counter_set('iso', 0);
\echo :LAST_ERROR_SQLSTATE
SELECT turnstile.counter_create('iso_new');
\echo :LAST_ERROR_SQLSTATE
SELECT turnstile.counter_drop('iso');
\echo :LAST_ERROR_SQLSTATE
SELECT name FROM turnstile.counter_info('iso');
\echo :LAST_ERROR_SQLSTATE
SELECT name FROM turnstile.counters;
\echo :LAST_ERROR_SQLSTATE
-- a REPEATABLE READ transaction is not enough either
BEGIN ISOLATION LEVEL REPEATABLE READ;
SELECT turnstile.counter_incr('iso');
\echo :LAST_ERROR_SQLSTATE
ROLLBACK;

-- In a SERIALIZABLE transaction every call works.
BEGIN ISOLATION LEVEL SERIALIZABLE;
SELECT turnstile.counter_get('iso');
SELECT turnstile.counter_incr('iso');
SELECT turnstile.counter_incr('iso', 5);
SELECT turnstile.counter_decr('iso');
SELECT turnstile.counter_get('iso');
SELECT turnstile.counter_incr('iso', 1, 15);
SELECT applied, value FROM turnstile.counter_cas('iso', 16, 20);
SELECT turnstile.counter_create('iso_new', 3);
SELECT turnstile.counter_set('iso_new', 4);
SELECT name, value FROM turnstile.counter_info('iso');
SELECT name, value FROM turnstile.counters WHERE name LIKE 'iso%' ORDER BY name;
SELECT turnstile.counter_drop('iso_new');
COMMIT;
-- so does an autocommit call when SERIALIZABLE is the default level
SET default_transaction_isolation = 'serializable';
SELECT turnstile.counter_incr('iso');
RESET default_transaction_isolation;
RESET turnstile.isolation;
SELECT value, version FROM turnstile.counter_info('iso');

--
-- "repeatable read" acts on the transaction's snapshot: inside a REPEATABLE
-- READ transaction counter_get repeats, and the transaction's own changes
-- are visible to its own readers.
--
SELECT turnstile.counter_set('iso', 10);
BEGIN ISOLATION LEVEL REPEATABLE READ;
SET LOCAL turnstile.isolation = 'repeatable read';
SELECT turnstile.counter_get('iso');
SELECT turnstile.counter_get('iso');
SELECT turnstile.counter_incr('iso', 5);
SELECT turnstile.counter_get('iso');
SELECT turnstile.counter_incr('iso');
SELECT turnstile.counter_get('iso');
SELECT value, version FROM turnstile.counter_info('iso');
SELECT name, value, version FROM turnstile.counters WHERE name = 'iso';
SELECT turnstile.counter_incr('iso', 1, 16);
SELECT applied, value, version FROM turnstile.counter_cas('iso', 17, 30);
SELECT turnstile.counter_get('iso');
-- created and dropped in the same transaction
SELECT turnstile.counter_create('iso_rr', 7);
SELECT turnstile.counter_get('iso_rr');
SELECT turnstile.counter_drop('iso_rr');
SELECT turnstile.counter_get('iso_rr') IS NULL AS dropped;
COMMIT;
SHOW turnstile.isolation;
SELECT value, version FROM turnstile.counter_info('iso');

-- Outside an explicit transaction "repeatable read" acts on each
-- statement's snapshot, which sees every earlier statement's work.
SET turnstile.isolation = 'repeatable read';
SELECT turnstile.counter_incr('iso');
SELECT turnstile.counter_incr('iso');
SELECT turnstile.counter_get('iso');
RESET turnstile.isolation;

--
-- "read committed" (the default) works at every transaction isolation
-- level, and a transaction sees its own changes.
--
SELECT turnstile.counter_set('iso', 0);
BEGIN ISOLATION LEVEL REPEATABLE READ;
SELECT turnstile.counter_incr('iso');
SELECT turnstile.counter_incr('iso');
SELECT turnstile.counter_get('iso');
SELECT value, version FROM turnstile.counter_info('iso');
SELECT name, value FROM turnstile.counters WHERE name = 'iso';
COMMIT;
BEGIN ISOLATION LEVEL SERIALIZABLE;
SELECT turnstile.counter_incr('iso');
SELECT turnstile.counter_get('iso');
COMMIT;
SELECT value, version FROM turnstile.counter_info('iso');

--
-- Several calls in one statement see each other's changes under every
-- policy, on a plain and on a hot counter: the policy's snapshot includes
-- what this transaction wrote before, even within the same statement.
--
SELECT turnstile.counter_create('iso_hot', 0, 4);
SELECT turnstile.counter_set('iso', 0);
SELECT turnstile.counter_incr('iso'), turnstile.counter_incr('iso_hot', 10)
  FROM generate_series(1, 3);
SET turnstile.isolation = 'repeatable read';
BEGIN ISOLATION LEVEL REPEATABLE READ;
SELECT turnstile.counter_incr('iso'), turnstile.counter_incr('iso_hot', 10)
  FROM generate_series(1, 3);
SELECT turnstile.counter_get('iso'), turnstile.counter_get('iso_hot');
COMMIT;
SET turnstile.isolation = 'serializable';
BEGIN ISOLATION LEVEL SERIALIZABLE;
SELECT turnstile.counter_incr('iso'), turnstile.counter_incr('iso_hot', 10)
  FROM generate_series(1, 3);
COMMIT;
RESET turnstile.isolation;
-- 9 increments each
SELECT name, value FROM turnstile.counters
 WHERE name IN ('iso', 'iso_hot') ORDER BY name;
SELECT turnstile.counter_drop('iso_hot');

SELECT turnstile.counter_drop('iso');
