--
-- counter_api: the whole counter API in one session, on plain counters.
--
-- Timestamps never appear in the output: they are kept in psql variables
-- with \gset and compared.  Errors belong to counter_errors.  pg_regress
-- creates the extension (--load-extension), so every file runs on its own.
--
-- The counter functions, with the attributes that matter to callers: every
-- one is volatile and parallel unsafe (they take turnstile locks), except
-- the pure key function, and none is STRICT (NULLs raise, see
-- counter_errors).
SELECT p.oid::regprocedure AS function, p.provolatile, p.proparallel,
       p.proisstrict, p.prosecdef, p.prorettype::regtype AS returns
  FROM pg_proc p
 WHERE p.pronamespace = 'turnstile'::regnamespace
   AND p.proname LIKE 'counter%'
 ORDER BY p.oid::regprocedure::text;

-- The relations behind them.
SELECT c.oid::regclass AS relation, c.relkind
  FROM pg_class c
 WHERE c.relnamespace = 'turnstile'::regnamespace
   AND c.relname IN ('counter_slot', 'counter_slot_pkey', 'counter_state',
                     'counters', 'locks')
 ORDER BY c.oid::regclass::text;

-- Every function and view of the counters has a comment.
SELECT p.oid::regprocedure::text AS uncommented
  FROM pg_proc p
 WHERE p.pronamespace = 'turnstile'::regnamespace
   AND p.proname LIKE 'counter%'
   AND obj_description(p.oid, 'pg_proc') IS NULL
UNION ALL
SELECT c.oid::regclass::text
  FROM pg_class c
 WHERE c.relnamespace = 'turnstile'::regnamespace
   AND c.relname IN ('counter_slot', 'counters', 'locks')
   AND obj_description(c.oid, 'pg_class') IS NULL;

-- pg_dump keeps the counters: the table is registered as configuration
-- data of the extension, with an empty condition (every row is dumped).
SELECT cfg.relation::regclass, cfg.condition = '' AS every_row
  FROM pg_extension e,
       unnest(e.extconfig, e.extcondition) AS cfg(relation, condition)
 WHERE e.extname = 'pg_turnstile'
   AND cfg.relation = 'turnstile.counter_slot'::regclass;

--
-- counter_create: creates an absent counter and returns its initial value.
--
SELECT turnstile.counter_create('a');
SELECT turnstile.counter_create('b', 42);
SELECT name, value, version, slots, created_at = updated_at AS untouched
  FROM turnstile.counter_info('b');
SELECT created_at AS b_created FROM turnstile.counter_info('b') \gset

-- On an existing counter it changes nothing, whatever initial and slots say,
-- and returns the current value.
SELECT turnstile.counter_create('b', 7);
SELECT turnstile.counter_create('b', 7, 16);
SELECT name, value, version, slots, created_at = :'b_created' AS same_created,
       created_at = updated_at AS untouched
  FROM turnstile.counter_info('b');

--
-- counter_incr(name, delta = 1): adds and returns the new value.
--
SELECT updated_at AS a_updated FROM turnstile.counter_info('a') \gset
SELECT turnstile.counter_incr('a');
SELECT turnstile.counter_incr('a', 10);
SELECT turnstile.counter_incr('a', -20);
SELECT turnstile.counter_incr('a', 0);
-- every change bumps the version by one and moves updated_at
SELECT value, version, updated_at > :'a_updated' AS updated_moved,
       updated_at > created_at AS after_created
  FROM turnstile.counter_info('a');

-- A missing counter is created at 0 first, so it ends at delta.
SELECT turnstile.counter_get('fresh') IS NULL AS fresh_absent;
SELECT turnstile.counter_incr('fresh');
SELECT turnstile.counter_incr('fresh5', 5);
SELECT name, value, version, slots FROM turnstile.counter_info('fresh');
SELECT name, value, version, slots FROM turnstile.counter_info('fresh5');

--
-- counter_decr(name, delta = 1) is counter_incr(name, -delta).
--
SELECT turnstile.counter_decr('a');
SELECT turnstile.counter_decr('a', 5);
SELECT turnstile.counter_decr('a', -15);
SELECT turnstile.counter_decr('fresh_down');
SELECT turnstile.counter_decr('fresh_down', 9);
SELECT name, value, version, slots FROM turnstile.counter_info('a');
SELECT name, value, version, slots FROM turnstile.counter_info('fresh_down');

--
-- counter_incr(name, delta, expected): applies when the value is expected.
--
SELECT turnstile.counter_incr('a', 5, 0);
SELECT turnstile.counter_incr('a', -2, 5);
SELECT value, version FROM turnstile.counter_info('a');
-- a missing counter counts as 0: expected 0 creates it
SELECT turnstile.counter_incr('cond_new', 7, 0);
SELECT name, value, version, slots FROM turnstile.counter_info('cond_new');

--
-- counter_cas(name, expected, new_value): (applied, value, version,
-- updated_at), whether it applied or not.
--
SELECT value, version, updated_at AS a_updated FROM turnstile.counter_info('a') \gset
SELECT applied, value, version, updated_at > :'a_updated' AS updated_moved
  FROM turnstile.counter_cas('a', 3, 100);
SELECT value, version, updated_at AS a_updated FROM turnstile.counter_info('a') \gset
-- not applied: the current state is returned and nothing changed
SELECT applied, value, version, updated_at = :'a_updated' AS updated_same
  FROM turnstile.counter_cas('a', 3, 200);
SELECT value, version, updated_at = :'a_updated' AS updated_same
  FROM turnstile.counter_info('a');
-- applying with new_value equal to the current value is still a change
SELECT applied, value, version, updated_at > :'a_updated' AS updated_moved
  FROM turnstile.counter_cas('a', 100, 100);

-- On a missing counter, expected 0 creates it with new_value ...
SELECT applied, value, version, updated_at IS NOT NULL AS has_updated_at
  FROM turnstile.counter_cas('cas_new', 0, 9);
SELECT name, value, version, slots FROM turnstile.counter_info('cas_new');
-- ... any other expected does not apply, reports NULLs and creates nothing.
SELECT applied, value, version, updated_at
  FROM turnstile.counter_cas('cas_missing', 1, 9);
SELECT turnstile.counter_get('cas_missing') IS NULL AS still_absent;

--
-- counter_get: the value, or NULL when there is no such counter.
--
SELECT turnstile.counter_get('a'), turnstile.counter_get('b');
SELECT turnstile.counter_get('no such counter') IS NULL AS is_null;

--
-- counter_set: unconditional; creates a missing counter.
--
SELECT version AS b_version FROM turnstile.counter_info('b') \gset
SELECT turnstile.counter_set('b', -5);
SELECT value, version - :b_version AS versions_added
  FROM turnstile.counter_info('b');
SELECT turnstile.counter_set('set_new', 123);
SELECT name, value, version, slots FROM turnstile.counter_info('set_new');

--
-- counter_info: one row, or no row when the counter is absent.
--
SELECT count(*) FROM turnstile.counter_info('a');
SELECT count(*) FROM turnstile.counter_info('no such counter');

--
-- counter_drop: true if it existed, then false.
--
SELECT turnstile.counter_drop('set_new');
SELECT turnstile.counter_drop('set_new');
SELECT turnstile.counter_get('set_new') IS NULL AS gone,
       (SELECT count(*) FROM turnstile.counter_info('set_new')) AS info_rows;
-- a dropped counter starts afresh
SELECT turnstile.counter_incr('set_new');
SELECT name, value, version FROM turnstile.counter_info('set_new');

--
-- The view turnstile.counters: one row per counter, as counter_info.
--
SELECT name, value, version, slots, updated_at >= created_at AS ordered
  FROM turnstile.counters
 ORDER BY name;
SELECT count(*) AS rows_differing_from_counter_info
  FROM turnstile.counters v
 WHERE (v.name, v.value, v.version, v.slots, v.created_at, v.updated_at)
       IS DISTINCT FROM
       (SELECT (i.name, i.value, i.version, i.slots, i.created_at, i.updated_at)
          FROM turnstile.counter_info(v.name) i);

--
-- Named arguments.
--
SELECT turnstile.counter_incr(name => 'named', delta => 3);
SELECT turnstile.counter_incr(delta => 4, name => 'named');
SELECT turnstile.counter_decr(name => 'named');
SELECT turnstile.counter_incr(name => 'named', delta => 10, expected => 6);
SELECT turnstile.counter_create(name => 'named_created', slots => 1, initial => 11);
SELECT applied, value FROM turnstile.counter_cas(name => 'named', new_value => 0, expected => 16);
SELECT turnstile.counter_set(value => 1, name => 'named');
SELECT turnstile.counter_get(name => 'named');
SELECT name, value FROM turnstile.counter_info(name => 'named_created');
SELECT turnstile.counter_drop(name => 'named_created');

--
-- Names are opaque text: quotes, case, spaces, unicode, format directives
-- and SQL all round-trip unchanged, and each is its own counter.
--
SELECT turnstile.counter_incr('it''s', 1);
SELECT turnstile.counter_incr('"quoted"', 2);
SELECT turnstile.counter_incr('Case', 3);
SELECT turnstile.counter_incr('case', 4);
SELECT turnstile.counter_incr('case ', 5);
SELECT turnstile.counter_incr(' ', 6);
SELECT turnstile.counter_incr(E'back\\slash\ttab', 7);
SELECT turnstile.counter_incr('%s%n%d', 8);
SELECT turnstile.counter_incr('zähler €', 9);
SELECT turnstile.counter_incr('🚀', 10);
SELECT turnstile.counter_incr('x''); DROP TABLE turnstile.counter_slot; --', 11);
SELECT turnstile.counter_incr('$$; DELETE FROM turnstile.counter_slot; $$', 12);
-- (to_json shows quotes, spaces and control characters unambiguously)
SELECT to_json(name) AS name, value, char_length(name) AS chars,
       octet_length(name) AS bytes
  FROM turnstile.counters
 WHERE name IN ('it''s', '"quoted"', 'Case', 'case', 'case ', ' ',
                E'back\\slash\ttab', '%s%n%d', 'zähler €', '🚀',
                'x''); DROP TABLE turnstile.counter_slot; --',
                '$$; DELETE FROM turnstile.counter_slot; $$')
 ORDER BY value;
-- the table is still there, and nothing was deleted
SELECT to_regclass('turnstile.counter_slot') AS still_there;
SELECT turnstile.counter_get('a') AS a_survived;

-- The longest names: 200 characters, in bytes or in multibyte characters.
SELECT turnstile.counter_incr(repeat('x', 200), 200);
SELECT turnstile.counter_incr(repeat('é', 200), 400);
SELECT turnstile.counter_create(repeat('€', 200), 600);
SELECT value, char_length(name) AS chars, octet_length(name) AS bytes,
       name IN (repeat('x', 200), repeat('é', 200), repeat('€', 200)) AS round_trip
  FROM turnstile.counters
 WHERE char_length(name) = 200
 ORDER BY value;
SELECT turnstile.counter_get(repeat('é', 200));
SELECT turnstile.counter_drop(repeat('€', 200));

--
-- Increments roll back with the calling transaction.
--
SELECT turnstile.counter_set('tx', 10);
BEGIN;
SELECT turnstile.counter_incr('tx');
SELECT turnstile.counter_incr('tx', 5);
SELECT turnstile.counter_get('tx');
ROLLBACK;
SELECT value, version FROM turnstile.counter_info('tx');

-- ROLLBACK TO SAVEPOINT undoes only what came after the savepoint.
BEGIN;
SELECT turnstile.counter_incr('tx');
SAVEPOINT s;
SELECT turnstile.counter_incr('tx', 100);
ROLLBACK TO SAVEPOINT s;
SELECT turnstile.counter_get('tx');
SELECT turnstile.counter_incr('tx', 2);
COMMIT;
SELECT value, version FROM turnstile.counter_info('tx');

-- Creation, set and drop roll back too.
BEGIN;
SELECT turnstile.counter_create('tx_created', 5);
SELECT turnstile.counter_set('tx', 0);
SELECT turnstile.counter_drop('a');
ROLLBACK;
SELECT turnstile.counter_get('tx_created') IS NULL AS never_created,
       turnstile.counter_get('tx') AS tx, turnstile.counter_get('a') AS a;

--
-- turnstile.locks: a transaction that changed a counter holds that counter's
-- turnstile lock until it ends.
--
BEGIN;
SELECT turnstile.counter_incr('tx');
SELECT turnstile.counter_incr('zähler €');
SELECT object, counter, slot, mode, granted
  FROM turnstile.locks
 WHERE pid = pg_backend_pid()
 ORDER BY counter;
COMMIT;
SELECT count(*) AS locks_after_commit
  FROM turnstile.locks
 WHERE pid = pg_backend_pid();
-- A reader takes no lock.  A writer's lock lasts for its call only: once
-- the call has written the counter's row, the row holds the counter until
-- the transaction ends (as PostgreSQL's row locks do), so the transaction
-- keeps no entry in the shared lock table for it; turnstile.locks shows it
-- all the same, from the row.  (The lock's key in pg_locks, while a call
-- holds it or waits, is counter_lock_key(name) split in two halves:
-- counter_advisory_keys and t/014 see it there.)
BEGIN;
SELECT turnstile.counter_get('tx') IS NOT NULL AS reader_takes_no_lock;
SELECT count(*) AS locks_of_a_reader FROM turnstile.locks WHERE pid = pg_backend_pid();
SELECT turnstile.counter_set('tx', 1);
SELECT count(*) AS advisory_locks_kept
  FROM pg_locks l
 WHERE l.locktype = 'advisory' AND l.pid = pg_backend_pid();
SELECT object, counter, mode, granted FROM turnstile.locks WHERE pid = pg_backend_pid();
COMMIT;
