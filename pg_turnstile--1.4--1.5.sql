/* pg_turnstile--1.4--1.5.sql */

-- complain if script is sourced in psql, rather than via ALTER EXTENSION
\echo Use "ALTER EXTENSION pg_turnstile UPDATE TO '1.5'" to load this file. \quit

--
-- Bounds.  A counter's inclusive range [lower, upper] (NULL: unbounded) is
-- kept in every one of its slot rows, like slots.  Each slot row also keeps
-- its own share of the range, [slot_lower, slot_upper] (the escrow): an
-- increment that keeps its slot inside the slot's share needs no other row,
-- and since the shares of a counter's slots add up to its range, the sum of
-- the slots stays inside the range whatever the other slots do.  A slot
-- whose share runs out sends the increment to the exclusive path, which
-- checks the counter's exact value against its range and deals the room
-- that is left out to the slots again (counter.c).  A plain counter's one
-- slot has the whole range as its share.  Existing counters are unbounded.
--
ALTER TABLE turnstile.counter_slot
	ADD COLUMN lower bigint,
	ADD COLUMN upper bigint,
	ADD COLUMN slot_lower bigint,
	ADD COLUMN slot_upper bigint;

ALTER TYPE turnstile.counter_state
	ADD ATTRIBUTE lower bigint,
	ADD ATTRIBUTE upper bigint;

CREATE OR REPLACE VIEW turnstile.counters AS
	SELECT name, value, version, slots, created_at, updated_at, lower, upper
	  FROM turnstile.counter_list();

--
-- counter_create takes the bounds.  The function with the new arguments is a
-- new function, so the EXECUTE grants on the old one do not carry over
-- (nor do those of rate_limit, below).
-- Granting them again here would make them the extension's initial
-- privileges: pg_dump would leave them out, and from PostgreSQL 17 on the
-- grantee could not be dropped.  So the roles that had them are named in a
-- WARNING (a NOTICE would not reach the user: extension scripts run with
-- client_min_messages at warning), with the GRANT to run after the update.
--
ALTER FUNCTION turnstile.counter_create(text, bigint, integer)
	RENAME TO counter_create_before_1_5;

CREATE FUNCTION turnstile.counter_create(name text, initial bigint DEFAULT 0,
										 slots integer DEFAULT 1,
										 lower bigint DEFAULT NULL,
										 upper bigint DEFAULT NULL)
RETURNS bigint
AS 'MODULE_PATHNAME', 'counter_create'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

REVOKE ALL ON FUNCTION turnstile.counter_create(text, bigint, integer, bigint, bigint)
	FROM PUBLIC;

--
-- rate_limit returns a composite type instead of OUT parameters, and its
-- cost has no DEFAULT: a second function without the argument stands for a
-- cost of 1.  The statement that calls it pays for a DEFAULT and for OUT
-- parameters at every parse and plan, about 13,000 and 6,000 CPU
-- instructions, a tenth of a whole call (bench/README.md).  The calls look
-- the same; the functions are new, with the same grant caveat as above.
--
CREATE TYPE turnstile.rate_limit_result AS (
	allowed		boolean,
	count		bigint,
	remaining	bigint,
	reset_at	timestamptz
);

COMMENT ON TYPE turnstile.rate_limit_result IS
	'what rate_limit returns: whether the call was allowed, the window''s count, what remains of it and when the window ends';

ALTER FUNCTION turnstile.rate_limit(text, bigint, interval, bigint)
	RENAME TO rate_limit_before_1_5;

-- (its C function has a name of its own, which a session that still has the
-- 1.4 library cannot find: it fails cleanly instead of reading a fourth
-- argument that is not there)
CREATE FUNCTION turnstile.rate_limit(key text, max bigint, per interval)
RETURNS turnstile.rate_limit_result
AS 'MODULE_PATHNAME', 'rate_limit_cost_1'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

CREATE FUNCTION turnstile.rate_limit(key text, max bigint, per interval, cost bigint)
RETURNS turnstile.rate_limit_result
AS 'MODULE_PATHNAME', 'rate_limit'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

REVOKE ALL ON FUNCTION turnstile.rate_limit(text, bigint, interval),
	turnstile.rate_limit(text, bigint, interval, bigint) FROM PUBLIC;

DO $$
DECLARE
	replaced record;
	dependents text;
	grantees text;
BEGIN
	FOR replaced IN
		SELECT * FROM (VALUES
			('turnstile.counter_create_before_1_5(text, bigint, integer)',
			 'counter_create has two more arguments (lower, upper)',
			 'turnstile.counter_create(text, bigint, integer, bigint, bigint)'),
			('turnstile.rate_limit_before_1_5(text, bigint, interval, bigint)',
			 'rate_limit returns turnstile.rate_limit_result and has a form without cost',
			 'turnstile.rate_limit(text, bigint, interval), turnstile.rate_limit(text, bigint, interval, bigint)'))
			AS r(old, change, new)
	LOOP
		-- a view (or a function with a SQL-standard body) that calls the old
		-- function would stop the DROP below with an error naming the
		-- renamed function, which the user never saw: say what to do instead
		SELECT pg_catalog.string_agg(o.object, ', ' ORDER BY o.object)
		  INTO dependents
		  FROM pg_catalog.pg_depend d,
			   LATERAL pg_catalog.pg_describe_object(d.classid, d.objid, d.objsubid) AS o(object)
		 WHERE d.refclassid = 'pg_catalog.pg_proc'::pg_catalog.regclass
		   AND d.refobjid = replaced.old::pg_catalog.regprocedure
		   AND d.deptype = 'n';
		IF dependents IS NOT NULL THEN
			RAISE EXCEPTION '% in pg_turnstile 1.5; objects that call the old one stop the update: %', replaced.change, dependents
				USING ERRCODE = 'dependent_objects_still_exist',
					  HINT = 'Drop them, run ALTER EXTENSION pg_turnstile UPDATE, and create them again.';
		END IF;

		SELECT pg_catalog.string_agg(
				   CASE WHEN a.grantee = 0 THEN 'PUBLIC'
						ELSE pg_catalog.quote_ident(a.grantee::pg_catalog.regrole::text) END,
				   ', ' ORDER BY a.grantee::pg_catalog.regrole::text)
		  INTO grantees
		  FROM pg_catalog.pg_proc p,
			   LATERAL pg_catalog.aclexplode(p.proacl) a
		 WHERE p.oid = replaced.old::pg_catalog.regprocedure
		   AND a.privilege_type = 'EXECUTE' AND a.grantee <> p.proowner;
		IF grantees IS NOT NULL THEN
			RAISE WARNING '% in pg_turnstile 1.5, and its grants are gone', replaced.change
				USING HINT = pg_catalog.format(
					'After the update, run: GRANT EXECUTE ON FUNCTION %s TO %s;',
					replaced.new, grantees);
		END IF;
	END LOOP;
END
$$;

DROP FUNCTION turnstile.counter_create_before_1_5(text, bigint, integer);
DROP FUNCTION turnstile.rate_limit_before_1_5(text, bigint, interval, bigint);

COMMENT ON FUNCTION turnstile.rate_limit(text, bigint, interval) IS
	'rate_limit(key, max, per, 1): count one call against key''s current window of length per';
COMMENT ON FUNCTION turnstile.rate_limit(text, bigint, interval, bigint) IS
	'count cost against key''s current window of length per (aligned to the Unix epoch) if the window''s count stays within max; says whether it did, the count, what remains and when the window ends';

COMMENT ON FUNCTION turnstile.counter_create(text, bigint, integer, bigint, bigint) IS
	'create a counter if it does not exist (slots > 1: a hot counter; lower, upper: its inclusive bounds, NULL for none); returns its current value';

CREATE FUNCTION turnstile.counter_bounds(name text, lower bigint, upper bigint)
RETURNS void
AS 'MODULE_PATHNAME', 'counter_bounds'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

COMMENT ON FUNCTION turnstile.counter_bounds(text, bigint, bigint) IS
	'give a counter the inclusive bounds [lower, upper] (NULL: none on that side); refuses a range that excludes its value';

CREATE FUNCTION turnstile.counter_try_incr(name text, delta bigint, clamp boolean DEFAULT false,
										   OUT applied boolean, OUT value bigint,
										   OUT applied_delta bigint)
RETURNS record
AS 'MODULE_PATHNAME', 'counter_try_incr'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

COMMENT ON FUNCTION turnstile.counter_try_incr(text, bigint, boolean) IS
	'add delta if the counter stays within its bounds, else add nothing (clamp: add what fits); returns whether all of delta applied, the value after the call and what was added';

REVOKE ALL ON FUNCTION turnstile.counter_bounds(text, bigint, bigint),
	turnstile.counter_try_incr(text, bigint, boolean) FROM PUBLIC;

--
-- turnstile.locks shows idempotency keys too (object 'idempotency key'):
-- the lock of a counter_incr_once call deciding on its key, the callers
-- waiting for it, and, while a caller waits for it, the transaction whose
-- row holds a key.  The lock carries a hash of the key, not its text, so
-- the key is not named.
--
CREATE OR REPLACE VIEW turnstile.locks AS
	WITH lock_rows AS (
		-- the locks of calls under way, and the marks of callers waiting
		-- for a key's writer (AccessShareLock, held while they wait on its
		-- transaction): shown as the wait they stand for
		SELECT l.objsubid::integer AS kind, l.classid::bigint AS key_high,
			   l.objid::bigint AS key_low, l.pid,
			   CASE WHEN l.mode <> 'AccessShareLock' THEN l.mode
					WHEN l.objsubid::integer < 0 THEN 'ShareLock'
					ELSE 'ExclusiveLock' END AS mode,
			   l.granted AND l.mode <> 'AccessShareLock' AS granted,
			   CASE WHEN l.mode <> 'AccessShareLock' THEN l.waitstart
					ELSE (SELECT w.waitstart FROM pg_catalog.pg_locks w
						   WHERE w.pid = l.pid AND w.locktype = 'transactionid'
							 AND NOT w.granted) END AS waitstart
		  FROM pg_catalog.pg_locks l
		 WHERE l.locktype = 'advisory'
		   AND l.database = (SELECT d.oid FROM pg_catalog.pg_database d
							  WHERE d.datname = pg_catalog.current_database())
		   AND (l.objsubid IN (21505, 21506, 21508, 21509) OR l.objsubid < 0)
	), rows_held AS (
		SELECT DISTINCT h.object, h.counter, h.slot, h.slots, h.realm_id, h.user_id, h.pid
		  FROM turnstile.key_holders() h
	), counter_rows AS (
		-- a transaction that wrote every slot of a hot counter (a set, a
		-- compare-and-set) holds the counter whole; one that wrote a slot
		-- holds that slot, and the counter in share mode
		SELECT r.counter, r.slot, r.slots, r.pid,
			   pg_catalog.count(*) OVER (PARTITION BY r.counter, r.pid) AS held_slots
		  FROM rows_held r WHERE r.object = 'counter'
	), held_by_rows AS (
		SELECT DISTINCT 21505 AS kind, c.counter,
			   NULL::integer AS slot, c.pid,
			   CASE WHEN c.slots = 1 OR c.held_slots = c.slots THEN 'ExclusiveLock'
					ELSE 'ShareLock' END AS mode
		  FROM counter_rows c
		UNION ALL
		SELECT 21506, c.counter, c.slot, c.pid, 'ExclusiveLock'
		  FROM counter_rows c WHERE c.slots > 1 AND c.held_slots < c.slots
	), named AS (
		-- the committed counters, read through the isolation policy like
		-- every turnstile reader, and those that open transactions are
		-- creating, whose waiters would otherwise go unnamed
		SELECT c.name, turnstile.counter_lock_key(c.name) AS key
		  FROM turnstile.counter_list() c
		UNION
		SELECT r.counter, turnstile.counter_lock_key(r.counter)
		  FROM rows_held r WHERE r.object = 'counter'
	)
	SELECT CASE WHEN h.kind = 21505 THEN 'counter'
				WHEN h.kind = 21506 THEN 'counter slot'
				WHEN h.kind = 21508 THEN 'counter growth'
				WHEN h.kind = 21509 THEN 'idempotency key'
				ELSE 'credential' END AS object,
		   n.name AS counter,
		   CASE h.kind WHEN 21506 THEN h.key_low::integer END AS slot,
		   r.name AS realm,
		   CASE WHEN h.kind < 0 THEN (h.key_high << 32 | h.key_low) END AS user_id,
		   h.pid, h.mode, h.granted, h.waitstart
	  FROM lock_rows h
	  LEFT JOIN named n
		-- (an idempotency key's lock key is made as a counter name's: a key
		-- spelled like a counter must not be shown as that counter)
		ON h.kind IN (21505, 21506, 21508)
	   AND (n.key >> 32) & 4294967295 = h.key_high
	   AND (h.kind = 21506 OR n.key & 4294967295 = h.key_low)
	  LEFT JOIN turnstile.realm r
		ON h.kind < 0 AND r.realm_id = h.kind + 32768
	UNION ALL
	SELECT CASE WHEN b.kind = 21505 THEN 'counter' ELSE 'counter slot' END,
		   b.counter, b.slot, NULL, NULL, b.pid, b.mode, true, NULL
	  FROM held_by_rows b
	UNION ALL
	SELECT 'credential', NULL, NULL, r.name, h.user_id, h.pid, 'ExclusiveLock', true, NULL
	  FROM rows_held h
	  LEFT JOIN turnstile.realm r ON r.realm_id = h.realm_id
	 WHERE h.object = 'credential'
	UNION ALL
	-- an idempotency key's row holds the key for the transaction that
	-- inserted it, whose backend is shown while a caller waits for it: the
	-- holder of the transaction that a waiter's mark on the key waits for
	SELECT DISTINCT 'idempotency key', NULL, NULL::integer, NULL, NULL::bigint,
		   x.pid, 'ExclusiveLock', true, NULL::timestamptz
	  FROM pg_catalog.pg_locks m
	  JOIN pg_catalog.pg_locks w
		ON w.pid = m.pid AND w.locktype = 'transactionid' AND NOT w.granted
	  JOIN pg_catalog.pg_locks x
		ON x.locktype = 'transactionid' AND x.transactionid = w.transactionid
	   AND x.granted AND x.mode = 'ExclusiveLock'
	 WHERE m.locktype = 'advisory' AND m.objsubid = 21509
	   AND m.mode = 'AccessShareLock'
	   AND m.database = (SELECT d.oid FROM pg_catalog.pg_database d
						  WHERE d.datname = pg_catalog.current_database());

COMMENT ON VIEW turnstile.locks IS
	'turnstile keys held and awaited in this database, decoded to counter names and realm/user ids: the locks of calls under way (counter, counter slot, counter growth, credential, idempotency key), the keys that open transactions hold through the rows they wrote, and the callers waiting for them';

--
-- turnstile.rate_limits reads through rate_limit_list(), with the latest
-- snapshot, as rate_limit itself reads: selected from with the
-- transaction's snapshot, it showed a REPEATABLE READ transaction that had
-- called rate_limit on a key counted by another caller since its snapshot
-- the key's count from before that call, or the key twice (the SPEC,
-- Isolation: every reader applies the writers' snapshot policy).  A
-- window ends per after it starts, a day counting 24 hours, as rate_limit
-- counts it; window_start + per added calendar days in the session's time
-- zone, an hour off rate_limit's reset_at across a daylight saving change.
-- As for turnstile.counters and counter_list, whoever selects from the view
-- needs EXECUTE on the function: the roles that may select from it are
-- named in a WARNING, with the GRANT to run.
--
CREATE TYPE turnstile.rate_limit_state AS (
	key				text,
	window_start	timestamptz,
	count			bigint,
	max				bigint,
	per				interval,
	used_at			timestamptz
);

COMMENT ON TYPE turnstile.rate_limit_state IS
	'a rate limit key''s row as rate_limit_list returns it: its window, the window''s count, the last call''s max and per, and its last use';

CREATE FUNCTION turnstile.rate_limit_list()
RETURNS SETOF turnstile.rate_limit_state
AS 'MODULE_PATHNAME', 'rate_limit_list'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

REVOKE ALL ON FUNCTION turnstile.rate_limit_list() FROM PUBLIC;

COMMENT ON FUNCTION turnstile.rate_limit_list() IS
	'every rate limit key''s row, read with the latest snapshot as rate_limit reads; the body of the view turnstile.rate_limits';

CREATE OR REPLACE VIEW turnstile.rate_limits AS
	SELECT r.key, r.max, r.per,
		   CASE WHEN e.reset_at OPERATOR(pg_catalog.>) pg_catalog.clock_timestamp()
				THEN r.count ELSE 0 END AS count,
		   CASE WHEN e.reset_at OPERATOR(pg_catalog.>) pg_catalog.clock_timestamp()
				THEN GREATEST(r.max OPERATOR(pg_catalog.-) r.count, 0)
				ELSE r.max END AS remaining,
		   r.window_start,
		   e.reset_at,
		   r.used_at
	  FROM turnstile.rate_limit_list() r,
		   LATERAL (SELECT r.window_start OPERATOR(pg_catalog.+)
						   (pg_catalog.date_part('epoch', r.per)
							OPERATOR(pg_catalog.*) interval '1 second') AS reset_at) e;

DO $$
DECLARE
	readers text;
BEGIN
	SELECT pg_catalog.string_agg(
			   CASE WHEN a.grantee = 0 THEN 'PUBLIC'
					ELSE pg_catalog.quote_ident(a.grantee::pg_catalog.regrole::text) END,
			   ', ' ORDER BY a.grantee::pg_catalog.regrole::text)
	  INTO readers
	  FROM pg_catalog.pg_class c,
		   LATERAL pg_catalog.aclexplode(c.relacl) a
	 WHERE c.oid = 'turnstile.rate_limits'::pg_catalog.regclass
	   AND a.privilege_type = 'SELECT' AND a.grantee <> c.relowner;
	IF readers IS NOT NULL THEN
		RAISE WARNING 'turnstile.rate_limits reads through turnstile.rate_limit_list() in pg_turnstile 1.5, which the roles that select from it may not execute yet'
			USING HINT = pg_catalog.format(
				'After the update, run: GRANT EXECUTE ON FUNCTION turnstile.rate_limit_list() TO %s;',
				readers);
	END IF;
END
$$;
