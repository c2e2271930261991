/* pg_turnstile--1.3--1.4.sql */

-- complain if script is sourced in psql, rather than via ALTER EXTENSION
\echo Use "ALTER EXTENSION pg_turnstile UPDATE TO '1.4'" to load this file. \quit

--
-- turnstile.locks shows a hot counter's growth lock too (object 'counter
-- growth'): the increment that asked for more slots holds it until its
-- transaction ends, and the growth worker waits for it before it grows the
-- counter.
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
		   AND (l.objsubid IN (21505, 21506, 21508) OR l.objsubid < 0)
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
				ELSE 'credential' END AS object,
		   n.name AS counter,
		   CASE h.kind WHEN 21506 THEN h.key_low::integer END AS slot,
		   r.name AS realm,
		   CASE WHEN h.kind < 0 THEN (h.key_high << 32 | h.key_low) END AS user_id,
		   h.pid, h.mode, h.granted, h.waitstart
	  FROM lock_rows h
	  LEFT JOIN named n
		ON h.kind > 0
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
	 WHERE h.object = 'credential';

COMMENT ON VIEW turnstile.locks IS
	'turnstile keys held and awaited in this database, decoded to counter names and realm/user ids: the locks of calls under way (counter, counter slot, counter growth, credential), the keys that open transactions hold through the rows they wrote, and the callers waiting for them';

--
-- Exactly-once increments (counter_once.c): the first call with an
-- idempotency key applies the increment and records the key with its result
-- in the same transaction; later calls with the key return that result.
-- Keys are kept for turnstile.idempotency_window after their use and
-- removed lazily by later calls, oldest first (hence the index on used_at).
--
CREATE TABLE turnstile.idempotency_key (
	key			text		PRIMARY KEY,
	counter		text		NOT NULL,
	delta		bigint		NOT NULL,
	result		bigint,
	used_at		timestamptz	NOT NULL
);
CREATE INDEX idempotency_key_used_at ON turnstile.idempotency_key (used_at);
REVOKE ALL ON turnstile.idempotency_key FROM PUBLIC;
SELECT pg_catalog.pg_extension_config_dump('turnstile.idempotency_key', '');

COMMENT ON TABLE turnstile.idempotency_key IS
	'pg_turnstile idempotency keys of counter_incr_once, with the result of the increment each one applied';

CREATE FUNCTION turnstile.counter_incr_once(name text, delta bigint, key text)
RETURNS bigint
AS 'MODULE_PATHNAME', 'counter_incr_once'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

REVOKE ALL ON FUNCTION turnstile.counter_incr_once(text, bigint, text) FROM PUBLIC;

COMMENT ON FUNCTION turnstile.counter_incr_once(text, bigint, text) IS
	'counter_incr(name, delta) once per idempotency key: a retry with the key returns the first call''s result and applies nothing';

--
-- Rate limits (rate_limit.c): fixed windows of length per, aligned to the
-- Unix epoch, counted in one row per key, which a call resets in place when
-- its window is over; all callers of a key take turns on that row, as they
-- would with a hand-written table.  rate_limit_sweep removes keys not used
-- for a while.  The last call's max and per are kept for the view.
--
CREATE TABLE turnstile.rate_limit (
	key				text		PRIMARY KEY,
	window_start	timestamptz	NOT NULL,
	count			bigint		NOT NULL,
	max				bigint		NOT NULL,
	per				interval	NOT NULL,
	allowed			boolean		NOT NULL,
	used_at			timestamptz	NOT NULL
) WITH (fillfactor = 70);
REVOKE ALL ON turnstile.rate_limit FROM PUBLIC;
SELECT pg_catalog.pg_extension_config_dump('turnstile.rate_limit', '');

COMMENT ON TABLE turnstile.rate_limit IS
	'pg_turnstile rate limits: each key''s current window and its count; use rate_limit and rate_limit_sweep';

CREATE FUNCTION turnstile.rate_limit(key text, max bigint, per interval, cost bigint DEFAULT 1,
									 OUT allowed boolean, OUT count bigint, OUT remaining bigint,
									 OUT reset_at timestamptz)
RETURNS record
AS 'MODULE_PATHNAME', 'rate_limit'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

COMMENT ON FUNCTION turnstile.rate_limit(text, bigint, interval, bigint) IS
	'count cost against key''s current window of length per (aligned to the Unix epoch) if the window''s count stays within max; says whether it did, the count, what remains and when the window ends';

CREATE FUNCTION turnstile.rate_limit_sweep(older_than interval)
RETURNS bigint
AS 'MODULE_PATHNAME', 'rate_limit_sweep'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

COMMENT ON FUNCTION turnstile.rate_limit_sweep(interval) IS
	'delete the rate limit keys not used for older_than; returns how many';

CREATE VIEW turnstile.rate_limits AS
	SELECT key, max, per,
		   CASE WHEN window_start OPERATOR(pg_catalog.+) per
					 OPERATOR(pg_catalog.>) pg_catalog.clock_timestamp()
				THEN count ELSE 0 END AS count,
		   CASE WHEN window_start OPERATOR(pg_catalog.+) per
					 OPERATOR(pg_catalog.>) pg_catalog.clock_timestamp()
				THEN GREATEST(max OPERATOR(pg_catalog.-) count, 0)
				ELSE max END AS remaining,
		   window_start,
		   window_start OPERATOR(pg_catalog.+) per AS reset_at,
		   used_at
	  FROM turnstile.rate_limit;

COMMENT ON VIEW turnstile.rate_limits IS
	'one row per rate limit key: the last call''s max and per, the current window''s count (0 once it is over), what remains, when it ends, and the last use';

REVOKE ALL ON FUNCTION turnstile.rate_limit(text, bigint, interval, bigint),
	turnstile.rate_limit_sweep(interval) FROM PUBLIC;
REVOKE ALL ON turnstile.rate_limits FROM PUBLIC;

--
-- Comments that were missing or incomplete.
--
COMMENT ON SCHEMA turnstile IS
	'pg_turnstile: exact counters and a per-user credential cache; DROP EXTENSION pg_turnstile deletes every counter and credential in it';

COMMENT ON TABLE turnstile.realm_grant IS
	'pg_turnstile realm grants: which roles may use a realm''s credentials; use realm_grant and realm_revoke';

COMMENT ON VIEW turnstile.credential_status IS
	'one row per cached credential: status (fresh, refresh_due, expired, invalidated, failed, missing), times and counts; never the credential itself';
