--
-- counter_hot: hot counters (slots > 1) in one session.
--
-- Which slot an increment lands on depends on the backend's pid, so nothing
-- below shows a slot number or a per-slot value that an increment wrote;
-- only totals, counts and versions, which do not depend on the slot.
-- This file reads turnstile.counter_slot directly: it runs as a superuser.
--
\set SHOW_CONTEXT never

--
-- Creation: one row per slot, the initial value in slot 0.
--
SELECT turnstile.counter_create('hot', 100, 16);
SELECT name, value, version, slots, created_at = updated_at AS untouched
  FROM turnstile.counter_info('hot');
SELECT count(*) AS rows, count(DISTINCT slot) AS slots, min(slot), max(slot),
       sum(value) AS total, count(*) FILTER (WHERE value <> 0) AS nonzero
  FROM turnstile.counter_slot
 WHERE name = 'hot';
-- every row carries the counter's slot count and creation time
SELECT count(DISTINCT slots) AS slot_counts, min(slots) AS slots,
       count(DISTINCT created_at) AS creation_times
  FROM turnstile.counter_slot
 WHERE name = 'hot';
-- 2 slots is the smallest hot counter, 1 slot is a plain one
SELECT turnstile.counter_create('hot2', 0, 2), turnstile.counter_create('plain1', 0, 1);
SELECT name, slots, (SELECT count(*) FROM turnstile.counter_slot s WHERE s.name = c.name) AS rows
  FROM turnstile.counters c
 WHERE name IN ('hot2', 'plain1')
 ORDER BY name;

--
-- Increments return the exact total, and counter_get is the exact sum.
--
SELECT version AS hot_version FROM turnstile.counter_info('hot') \gset
SELECT turnstile.counter_incr('hot');
SELECT turnstile.counter_incr('hot', 10);
SELECT turnstile.counter_decr('hot', 3);
SELECT turnstile.counter_incr('hot', -8);
SELECT turnstile.counter_get('hot');
SELECT sum(value) AS table_sum FROM turnstile.counter_slot WHERE name = 'hot';
-- each increment changed one slot row, so the version grew by one each
SELECT value, version - :hot_version AS versions_added, slots,
       updated_at > created_at AS updated_moved
  FROM turnstile.counter_info('hot');
SELECT count(*) AS rows FROM turnstile.counter_slot WHERE name = 'hot';

-- Spread values over every slot, as increments from 16 backends would
-- (slot k gets k, 0 + 1 + ... + 15 = 120): counter_get, counter_info, the
-- view and the next increment all see the sum over all slots.
UPDATE turnstile.counter_slot
   SET value = value + slot, version = version + 1
 WHERE name = 'hot';
SELECT count(*) FILTER (WHERE value <> 0) >= 15 AS spread
  FROM turnstile.counter_slot WHERE name = 'hot';
SELECT turnstile.counter_get('hot');
SELECT value, slots FROM turnstile.counter_info('hot');
SELECT name, value, slots FROM turnstile.counters WHERE name = 'hot';
SELECT turnstile.counter_incr('hot', 1000);
SELECT turnstile.counter_get('hot');

--
-- A hot increment holds the counter's lock in ShareLock mode (so increments
-- do not wait for each other) plus the ExclusiveLock of the one slot it
-- updated.
--
SELECT turnstile.counter_set('hot2', 0);
BEGIN;
SELECT turnstile.counter_incr('hot2', 5);
SELECT object, counter, mode, granted,
       CASE WHEN object = 'counter slot' THEN
         slot = (SELECT s.slot FROM turnstile.counter_slot s
                  WHERE s.name = 'hot2' AND s.value = 5)
       END AS slot_is_the_updated_one
  FROM turnstile.locks
 WHERE pid = pg_backend_pid()
 ORDER BY object;
-- a second increment in the same transaction reuses its slot
SELECT turnstile.counter_incr('hot2', 5);
SELECT count(*) FILTER (WHERE object = 'counter slot') AS slot_locks,
       count(*) AS locks
  FROM turnstile.locks
 WHERE pid = pg_backend_pid();
COMMIT;
SELECT count(*) AS locks_after_commit FROM turnstile.locks WHERE pid = pg_backend_pid();
SELECT turnstile.counter_get('hot2');
-- anything that needs the one exact value takes the counter's ExclusiveLock
BEGIN;
SELECT turnstile.counter_incr('hot2', 1, 10);
SELECT object, counter, slot, mode, granted
  FROM turnstile.locks
 WHERE pid = pg_backend_pid()
 ORDER BY object;
COMMIT;

--
-- The conditional forms see one exact value: the sum of all slots.
--
SELECT turnstile.counter_get('hot') AS hot_total \gset
SELECT applied, value FROM turnstile.counter_cas('hot', 0, 1);
SELECT turnstile.counter_incr('hot', 1, 0);
\echo :LAST_ERROR_SQLSTATE
SELECT turnstile.counter_incr('hot', 1, :hot_total);
-- an applied put collapses the value into slot 0 and keeps every slot row
SELECT applied, value FROM turnstile.counter_cas('hot', :hot_total + 1, 500);
SELECT count(*) AS rows, count(*) FILTER (WHERE value <> 0) AS nonzero,
       min(slot) FILTER (WHERE value <> 0) AS nonzero_slot, sum(value)
  FROM turnstile.counter_slot WHERE name = 'hot';
SELECT name, value, slots FROM turnstile.counter_info('hot');
-- increments go on landing on slots afterwards
SELECT turnstile.counter_incr('hot', 7);
SELECT turnstile.counter_incr('hot', 7, 507);

--
-- counter_set collapses the value into slot 0; the other slots go to zero.
--
UPDATE turnstile.counter_slot SET value = value + slot WHERE name = 'hot';
SELECT turnstile.counter_get('hot');
SELECT version AS hot_version FROM turnstile.counter_info('hot') \gset
SELECT turnstile.counter_set('hot', 42);
SELECT count(*) AS rows, count(*) FILTER (WHERE value <> 0) AS nonzero,
       min(slot) FILTER (WHERE value <> 0) AS nonzero_slot, sum(value)
  FROM turnstile.counter_slot WHERE name = 'hot';
-- the version is the sum of the slot versions: a reset that wrote all 16
-- rows adds 16, one that only had to write slot 0 adds 1
SELECT value, slots, version - :hot_version AS versions_added
  FROM turnstile.counter_info('hot');
SELECT version AS hot_version FROM turnstile.counter_info('hot') \gset
SELECT turnstile.counter_set('hot', 43);
SELECT value, version - :hot_version AS versions_added
  FROM turnstile.counter_info('hot');

--
-- Overflow of a hot counter raises 22003 and changes nothing.  The DETAIL
-- depends on the slot the increment drew (this slot's value or the other
-- slots' sum), so only the message is shown here.
--
SELECT turnstile.counter_set('hot', 9223372036854775807);
SELECT turnstile.counter_decr('hot', 10);
SELECT turnstile.counter_incr('hot', 5);
SELECT turnstile.counter_incr('hot', 5);
SELECT version AS hot_version FROM turnstile.counter_info('hot') \gset
\set VERBOSITY terse
SELECT turnstile.counter_incr('hot', 1);
\echo :LAST_ERROR_SQLSTATE
SELECT turnstile.counter_incr('hot', 9223372036854775807);
\echo :LAST_ERROR_SQLSTATE
SELECT turnstile.counter_incr('hot', 1, 9223372036854775807);
\echo :LAST_ERROR_SQLSTATE
\set VERBOSITY default
SELECT value, version = :hot_version AS version_unchanged,
       (SELECT count(*) FROM turnstile.counter_slot WHERE name = 'hot') AS rows
  FROM turnstile.counter_info('hot');
-- and at the lower end
SELECT turnstile.counter_set('hot', -9223372036854775807);
SELECT turnstile.counter_decr('hot');
SELECT version AS hot_version FROM turnstile.counter_info('hot') \gset
\set VERBOSITY terse
SELECT turnstile.counter_decr('hot');
\echo :LAST_ERROR_SQLSTATE
\set VERBOSITY default
SELECT value, version = :hot_version AS version_unchanged
  FROM turnstile.counter_info('hot');

-- The whole table still holds exactly 16 rows for the counter.
SELECT count(*) FROM turnstile.counter_slot WHERE name = 'hot';

--
-- Dropping and recreating a counter with another slot count in the same
-- session: each backend remembers slot counts, and must not trust a stale
-- entry.
--
-- plain -> hot
SELECT turnstile.counter_incr('morph', 3);
SELECT turnstile.counter_drop('morph');
SELECT turnstile.counter_create('morph', 10, 8);
SELECT turnstile.counter_incr('morph', 3);
SELECT turnstile.counter_incr('morph', 3);
SELECT name, value, slots FROM turnstile.counter_info('morph');
SELECT count(*) AS rows FROM turnstile.counter_slot WHERE name = 'morph';
-- hot -> plain
SELECT turnstile.counter_drop('morph');
SELECT turnstile.counter_create('morph', 20);
SELECT turnstile.counter_incr('morph', 3);
SELECT name, value, slots FROM turnstile.counter_info('morph');
SELECT count(*) AS rows FROM turnstile.counter_slot WHERE name = 'morph';
-- hot -> plain -> hot in one transaction
BEGIN;
SELECT turnstile.counter_drop('morph');
SELECT turnstile.counter_create('morph', 0, 4);
SELECT turnstile.counter_incr('morph', 2);
SELECT turnstile.counter_drop('morph');
SELECT turnstile.counter_incr('morph', 5);
SELECT turnstile.counter_drop('morph');
SELECT turnstile.counter_create('morph', 1, 4);
SELECT turnstile.counter_incr('morph', 2);
COMMIT;
SELECT name, value, slots FROM turnstile.counter_info('morph');
SELECT count(*) AS rows FROM turnstile.counter_slot WHERE name = 'morph';

-- A rolled-back recreation leaves the old counter behind, while this
-- backend remembers the slot count of the rolled-back one.
-- (a) the backend takes a hot counter for a plain one:
SELECT turnstile.counter_create('stale_hot', 0, 8);
BEGIN;
SELECT turnstile.counter_drop('stale_hot');
SELECT turnstile.counter_create('stale_hot', 0, 1);
ROLLBACK;
SELECT turnstile.counter_incr('stale_hot', 4);
SELECT turnstile.counter_incr('stale_hot', 4);
SELECT name, value, slots FROM turnstile.counter_info('stale_hot');
SELECT count(*) AS rows, sum(value) FROM turnstile.counter_slot WHERE name = 'stale_hot';
-- (b) the backend takes a plain counter for a hot one:
SELECT turnstile.counter_create('stale_plain', 0, 1);
BEGIN;
SELECT turnstile.counter_drop('stale_plain');
SELECT turnstile.counter_create('stale_plain', 0, 8);
ROLLBACK;
SELECT turnstile.counter_incr('stale_plain', 4);
SELECT turnstile.counter_incr('stale_plain', 4);
SELECT name, value, slots FROM turnstile.counter_info('stale_plain');
SELECT count(*) AS rows, sum(value) FROM turnstile.counter_slot WHERE name = 'stale_plain';
-- (c) the backend remembers a hot counter that was never committed:
BEGIN;
SELECT turnstile.counter_create('stale_ghost', 0, 8);
ROLLBACK;
SELECT turnstile.counter_get('stale_ghost') IS NULL AS absent;
SELECT turnstile.counter_incr('stale_ghost', 4);
SELECT name, value, slots FROM turnstile.counter_info('stale_ghost');
SELECT count(*) AS rows FROM turnstile.counter_slot WHERE name = 'stale_ghost';

-- Increments of a hot counter roll back like any other.
SELECT turnstile.counter_set('hot', 0);
BEGIN;
SELECT turnstile.counter_incr('hot', 5);
SAVEPOINT s;
SELECT turnstile.counter_incr('hot', 50);
ROLLBACK TO SAVEPOINT s;
SELECT turnstile.counter_get('hot');
ROLLBACK;
SELECT turnstile.counter_get('hot');

-- Dropping a hot counter removes every slot row.
SELECT name, turnstile.counter_drop(name)
  FROM turnstile.counters
 WHERE name IN ('hot', 'hot2', 'plain1', 'morph', 'stale_hot', 'stale_plain',
                'stale_ghost')
 ORDER BY name;
SELECT count(*) AS rows_left
  FROM turnstile.counter_slot
 WHERE name IN ('hot', 'hot2', 'plain1', 'morph', 'stale_hot', 'stale_plain',
                'stale_ghost');

--
-- Increments write counter_slot directly, without SQL.  A table that was
-- given a trigger or another index makes them go through SQL again, so that
-- the trigger fires and the index is kept up to date.
--
SELECT turnstile.counter_create('altered_plain', 0);
SELECT turnstile.counter_create('altered_hot', 0, 4);
CREATE TABLE slot_audit (name text, value bigint);
CREATE FUNCTION slot_audit() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	INSERT INTO slot_audit VALUES (NEW.name, NEW.value);
	RETURN NEW;
END $$;
CREATE TRIGGER slot_audit AFTER UPDATE ON turnstile.counter_slot
	FOR EACH ROW EXECUTE FUNCTION slot_audit();
-- through SQL too, this backend's first increment of a hot counter ends
-- holding the shared counter lock and one slot's, and the next increment
-- lands on that same slot
BEGIN;
SELECT turnstile.counter_incr('altered_plain', 2), turnstile.counter_incr('altered_hot', 3);
SELECT object, counter, mode, granted
  FROM turnstile.locks
 WHERE pid = pg_backend_pid()
 ORDER BY object, counter, mode;
COMMIT;
SELECT turnstile.counter_incr('altered_plain', 2), turnstile.counter_incr('altered_hot', 3);
SELECT name, count(*) AS updates, max(value) FROM slot_audit GROUP BY name ORDER BY name;
DROP TRIGGER slot_audit ON turnstile.counter_slot;
CREATE INDEX counter_slot_by_value ON turnstile.counter_slot (value);
SELECT turnstile.counter_incr('altered_plain', 2), turnstile.counter_incr('altered_hot', 3);
SET enable_seqscan = off;
SELECT name, value FROM turnstile.counter_slot
 WHERE value IN (6, 9) AND name LIKE 'altered%' ORDER BY name;
RESET enable_seqscan;
DROP INDEX turnstile.counter_slot_by_value;
-- and without them, the direct path again
SELECT turnstile.counter_incr('altered_plain', 2), turnstile.counter_incr('altered_hot', 3);
SELECT name, count(*) AS updates FROM slot_audit GROUP BY name ORDER BY name;
-- a CHECK constraint holds for increments too
ALTER TABLE turnstile.counter_slot
	ADD CONSTRAINT slot_at_most_10 CHECK (value <= 10) NOT VALID;
\set VERBOSITY terse
SELECT turnstile.counter_incr('altered_plain', 5);
\echo :LAST_ERROR_SQLSTATE
SELECT turnstile.counter_incr('altered_hot', 30);
\echo :LAST_ERROR_SQLSTATE
\set VERBOSITY default
ALTER TABLE turnstile.counter_slot DROP CONSTRAINT slot_at_most_10;
-- a column the direct path needs, renamed, is an error, not a wrong write
ALTER TABLE turnstile.counter_slot RENAME COLUMN updated_at TO changed_at;
\set VERBOSITY terse
SELECT turnstile.counter_incr('altered_plain', 1);
\echo :LAST_ERROR_SQLSTATE
\set VERBOSITY default
ALTER TABLE turnstile.counter_slot RENAME COLUMN changed_at TO updated_at;
SELECT name, value, slots FROM turnstile.counters WHERE name LIKE 'altered%' ORDER BY name;
SELECT turnstile.counter_drop('altered_plain'), turnstile.counter_drop('altered_hot');
DROP TABLE slot_audit;
DROP FUNCTION slot_audit();

--
-- A backend remembers where a hot counter's slot rows are; after a rewrite
-- of the table, or a drop and a new counter of the same name, it finds them
-- again.
--
SELECT turnstile.counter_create('roots', 0, 4);
SELECT turnstile.counter_incr('roots', 1) FROM generate_series(1, 3);
VACUUM FULL turnstile.counter_slot;
SELECT turnstile.counter_incr('roots', 1) FROM generate_series(1, 3);
SELECT turnstile.counter_drop('roots');
SELECT turnstile.counter_create('roots', 100, 4);
SELECT turnstile.counter_incr('roots', 1) FROM generate_series(1, 3);
SELECT turnstile.counter_get('roots'),
       (SELECT sum(value) FROM turnstile.counter_slot WHERE name = 'roots') AS table_sum;
SELECT turnstile.counter_drop('roots');

-- counter_get reads a hot counter from the same remembered places: after its
-- rows moved out of their HOT chains (an update of the key moves a row), and
-- after a drop, and a new counter of the same name with other slots.
SELECT turnstile.counter_create('get_roots', 10, 4);
SELECT turnstile.counter_get('get_roots');
SELECT turnstile.counter_incr('get_roots', 5) > 0 AS added;
SELECT turnstile.counter_get('get_roots');
UPDATE turnstile.counter_slot SET slot = slot + 100 WHERE name = 'get_roots';
UPDATE turnstile.counter_slot SET slot = slot - 100, value = value + 1 WHERE name = 'get_roots';
SELECT turnstile.counter_get('get_roots');
SELECT turnstile.counter_drop('get_roots');
SELECT turnstile.counter_get('get_roots') IS NULL AS dropped;
SELECT turnstile.counter_create('get_roots', 7, 8);
SELECT turnstile.counter_get('get_roots');
SELECT turnstile.counter_drop('get_roots');
SELECT turnstile.counter_create('get_roots', 3, 4);
SELECT turnstile.counter_get('get_roots');
VACUUM FULL turnstile.counter_slot;
SELECT turnstile.counter_incr('get_roots', 2) > 0 AS added;
SELECT turnstile.counter_get('get_roots');
SELECT turnstile.counter_drop('get_roots');
-- It also remembers the newest version of each row it found, and walks each
-- row's chain on from there: it reads the exact value after other writers
-- added versions, after a vacuum pruned the versions it remembered, and
-- after other rows were stored on the page in their place.
SELECT turnstile.counter_create('tips', 0, 4);
SELECT sum(turnstile.counter_incr('tips', 1)) FROM generate_series(1, 8);
SELECT turnstile.counter_get('tips');
UPDATE turnstile.counter_slot SET value = value + 10 WHERE name = 'tips';
UPDATE turnstile.counter_slot SET value = value + 10 WHERE name = 'tips';
SELECT turnstile.counter_get('tips');
VACUUM turnstile.counter_slot;
SELECT count(turnstile.counter_create('tips_' || g, g, 4)) FROM generate_series(1, 20) g;
UPDATE turnstile.counter_slot SET value = value + 100 WHERE name = 'tips';
SELECT turnstile.counter_get('tips'),
       (SELECT sum(value) FROM turnstile.counter_slot WHERE name = 'tips') AS table_sum;
SELECT turnstile.counter_incr('tips', 1);
SELECT turnstile.counter_get('tips');
SELECT bool_and(turnstile.counter_get('tips_' || g) = g) AS others_exact
  FROM generate_series(1, 20) g;
SELECT count(turnstile.counter_drop(name)) FROM turnstile.counters WHERE name LIKE 'tips%';
-- Each increment prunes the page of the row it updates, whichever slot that
-- is, so that its next version fits on the page: 300 increments, each in its
-- own transaction, all update their row in place (HOT).
SELECT turnstile.counter_create('pruned', 0, 4);
SELECT turnstile.counter_get('pruned');
SELECT pg_stat_force_next_flush();
SELECT n_tup_upd AS updates_before, n_tup_hot_upd AS hot_updates_before
  FROM pg_stat_user_tables WHERE relid = 'turnstile.counter_slot'::regclass \gset
DO $$
BEGIN
	FOR i IN 1..300 LOOP
		PERFORM turnstile.counter_incr('pruned', 1);
		COMMIT;
	END LOOP;
END $$;
SELECT pg_stat_force_next_flush();
SELECT n_tup_upd - :updates_before AS updates,
       n_tup_hot_upd - :hot_updates_before AS hot_updates
  FROM pg_stat_user_tables WHERE relid = 'turnstile.counter_slot'::regclass;
SELECT turnstile.counter_get('pruned'), turnstile.counter_drop('pruned');
-- and once it knows them, it does not scan the index at all
SELECT turnstile.counter_create('get_seen', 0, 4);
SELECT turnstile.counter_get('get_seen');
SELECT pg_stat_force_next_flush();
SELECT idx_scan AS index_scans_before FROM pg_stat_user_indexes
 WHERE indexrelid = 'turnstile.counter_slot_pkey'::regclass \gset
SELECT sum(turnstile.counter_get('get_seen')) FROM generate_series(1, 10);
SELECT pg_stat_force_next_flush();
SELECT idx_scan - :index_scans_before AS index_scans FROM pg_stat_user_indexes
 WHERE indexrelid = 'turnstile.counter_slot_pkey'::regclass;
SELECT turnstile.counter_drop('get_seen');

-- more hot counters than a backend remembers (64): the oldest are forgotten,
-- and read and incremented again through the index
SELECT count(turnstile.counter_create('many_' || g, g, 2)) FROM generate_series(1, 70) g;
SELECT bool_and(turnstile.counter_incr('many_' || g, 1) = g + 1) AS exact
  FROM generate_series(1, 70) g;
SELECT bool_and(turnstile.counter_get('many_' || g) = g + 1) AS exact
  FROM generate_series(1, 70) g;
SELECT bool_and(turnstile.counter_incr('many_' || g, 1) = g + 2) AS exact
  FROM generate_series(1, 70) g;
SELECT bool_and(turnstile.counter_get('many_' || g) = g + 2) AS exact
  FROM generate_series(1, 70) g;
SELECT count(turnstile.counter_drop('many_' || g)) FROM generate_series(1, 70) g;
-- a table with more columns than the direct path unpacks (as after many
-- ALTER TABLEs, since dropped columns still count): reads go through the
-- index and increments through SQL, also when the rows' places are known
BEGIN;
SELECT turnstile.counter_create('wide', 5, 4);
ALTER TABLE turnstile.counter_slot
	ADD COLUMN extra_1 bigint,
	ADD COLUMN extra_2 bigint,
	ADD COLUMN extra_3 bigint,
	ADD COLUMN extra_4 bigint,
	ADD COLUMN extra_5 bigint,
	ADD COLUMN extra_6 bigint,
	ADD COLUMN extra_7 bigint,
	ADD COLUMN extra_8 bigint,
	ADD COLUMN extra_9 bigint,
	ADD COLUMN extra_10 bigint,
	ADD COLUMN extra_11 bigint,
	ADD COLUMN extra_12 bigint,
	ADD COLUMN extra_13 bigint,
	ADD COLUMN extra_14 bigint,
	ADD COLUMN extra_15 bigint,
	ADD COLUMN extra_16 bigint,
	ADD COLUMN extra_17 bigint,
	ADD COLUMN extra_18 bigint,
	ADD COLUMN extra_19 bigint,
	ADD COLUMN extra_20 bigint,
	ADD COLUMN extra_21 bigint,
	ADD COLUMN extra_22 bigint,
	ADD COLUMN extra_23 bigint,
	ADD COLUMN extra_24 bigint,
	ADD COLUMN extra_25 bigint,
	ADD COLUMN extra_26 bigint,
	ADD COLUMN extra_27 bigint,
	ADD COLUMN extra_28 bigint,
	ADD COLUMN extra_29 bigint,
	ADD COLUMN extra_30 bigint,
	ADD COLUMN extra_31 bigint,
	ADD COLUMN extra_32 bigint;
SELECT turnstile.counter_get('wide');
SELECT turnstile.counter_get('wide');
SELECT turnstile.counter_incr('wide', 1) > 0 AS added;
SELECT turnstile.counter_get('wide');
ROLLBACK;
SELECT turnstile.counter_get('wide') IS NULL AS rolled_back;
