/* pg_turnstile--1.0.sql */

-- complain if script is sourced in psql, rather than via CREATE EXTENSION
\echo Use "CREATE EXTENSION pg_turnstile" to load this file. \quit

--
-- Storage.  One row per counter slot: a plain counter has the single slot 0,
-- a hot counter has slots 0 .. slots-1 and its value is their sum.  slots and
-- created_at are the same in every row of a counter and never change.
-- The fillfactor leaves room on each page for HOT updates of hot rows.
--
CREATE TABLE turnstile.counter_slot (
	name		text		NOT NULL,
	slot		integer		NOT NULL,
	slots		integer		NOT NULL,
	value		bigint		NOT NULL,
	version		bigint		NOT NULL,
	created_at	timestamptz NOT NULL,
	updated_at	timestamptz NOT NULL,
	PRIMARY KEY (name, slot),
	CHECK (pg_catalog.char_length(name) BETWEEN 1 AND 200),
	CHECK (slots BETWEEN 1 AND 1024 AND slot >= 0 AND slot < slots)
) WITH (fillfactor = 50);

REVOKE ALL ON turnstile.counter_slot FROM PUBLIC;
SELECT pg_catalog.pg_extension_config_dump('turnstile.counter_slot', '');

COMMENT ON TABLE turnstile.counter_slot IS
	'pg_turnstile counters, one row per slot; use the turnstile functions, not this table';

CREATE TYPE turnstile.counter_state AS (
	name		text,
	value		bigint,
	version		bigint,
	slots		integer,
	created_at	timestamptz,
	updated_at	timestamptz
);

--
-- Counters
--
CREATE FUNCTION turnstile.counter_create(name text, initial bigint DEFAULT 0,
										 slots integer DEFAULT 1)
RETURNS bigint
AS 'MODULE_PATHNAME', 'counter_create'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

COMMENT ON FUNCTION turnstile.counter_create(text, bigint, integer) IS
	'create a counter if it does not exist (slots > 1: a hot counter); returns its current value';

CREATE FUNCTION turnstile.counter_incr(name text, delta bigint DEFAULT 1)
RETURNS bigint
AS 'MODULE_PATHNAME', 'counter_incr'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

COMMENT ON FUNCTION turnstile.counter_incr(text, bigint) IS
	'add delta to a counter (creating it at 0 if absent); returns the new value';

CREATE FUNCTION turnstile.counter_incr(name text, delta bigint, expected bigint)
RETURNS bigint
AS 'MODULE_PATHNAME', 'counter_incr_expected'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

COMMENT ON FUNCTION turnstile.counter_incr(text, bigint, bigint) IS
	'add delta only if the counter equals expected, else raise 40001 with the current value; returns the new value';

CREATE FUNCTION turnstile.counter_decr(name text, delta bigint DEFAULT 1)
RETURNS bigint
AS 'MODULE_PATHNAME', 'counter_decr'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

COMMENT ON FUNCTION turnstile.counter_decr(text, bigint) IS
	'subtract delta from a counter (creating it at 0 if absent); returns the new value';

CREATE FUNCTION turnstile.counter_cas(name text, expected bigint, new_value bigint,
									  OUT applied boolean, OUT value bigint,
									  OUT version bigint, OUT updated_at timestamptz)
RETURNS record
AS 'MODULE_PATHNAME', 'counter_cas'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

COMMENT ON FUNCTION turnstile.counter_cas(text, bigint, bigint) IS
	'set a counter to new_value only if it equals expected; returns whether it applied and the current state';

CREATE FUNCTION turnstile.counter_get(name text)
RETURNS bigint
AS 'MODULE_PATHNAME', 'counter_get'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

COMMENT ON FUNCTION turnstile.counter_get(text) IS
	'the value of a counter (the exact sum of a hot counter), or NULL if it does not exist';

CREATE FUNCTION turnstile.counter_set(name text, value bigint)
RETURNS bigint
AS 'MODULE_PATHNAME', 'counter_set'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

COMMENT ON FUNCTION turnstile.counter_set(text, bigint) IS
	'set a counter to value unconditionally (creating it if absent); returns value';

CREATE FUNCTION turnstile.counter_info(name text)
RETURNS SETOF turnstile.counter_state
AS 'MODULE_PATHNAME', 'counter_info'
LANGUAGE C VOLATILE PARALLEL UNSAFE ROWS 1;

COMMENT ON FUNCTION turnstile.counter_info(text) IS
	'one row describing a counter, or no row if it does not exist';

CREATE FUNCTION turnstile.counter_drop(name text)
RETURNS boolean
AS 'MODULE_PATHNAME', 'counter_drop'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

COMMENT ON FUNCTION turnstile.counter_drop(text) IS
	'drop a counter; returns true if it existed';

CREATE FUNCTION turnstile.counter_list()
RETURNS SETOF turnstile.counter_state
AS 'MODULE_PATHNAME', 'counter_list'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

COMMENT ON FUNCTION turnstile.counter_list() IS
	'every counter, read under turnstile.isolation; the body of the view turnstile.counters';

CREATE VIEW turnstile.counters AS
	SELECT name, value, version, slots, created_at, updated_at
	  FROM turnstile.counter_list();

COMMENT ON VIEW turnstile.counters IS
	'one row per counter, read under turnstile.isolation';

--
-- Locks
--
CREATE FUNCTION turnstile.counter_lock_key(name text)
RETURNS bigint
AS 'MODULE_PATHNAME', 'counter_lock_key'
LANGUAGE C IMMUTABLE PARALLEL SAFE;

COMMENT ON FUNCTION turnstile.counter_lock_key(text) IS
	'the key of a counter''s turnstile lock, as classid << 32 | objid in pg_locks';

-- Turnstile locks are advisory locks whose objsubid is a turnstile kind
-- (21505 = 0x5401 counter, 21506 = 0x5402 hot-counter slot), so they can never
-- be confused with pg_advisory_lock's own (objsubid 1 or 2).
CREATE VIEW turnstile.locks AS
	WITH held AS (
		SELECT l.objsubid::integer AS kind, l.classid::bigint AS key_high,
			   l.objid::bigint AS key_low, l.pid, l.mode, l.granted, l.waitstart
		  FROM pg_catalog.pg_locks l
		 WHERE l.locktype = 'advisory'
		   AND l.database = (SELECT d.oid FROM pg_catalog.pg_database d
							  WHERE d.datname = pg_catalog.current_database())
		   AND l.objsubid IN (21505, 21506)
	), named AS (
		SELECT c.name, turnstile.counter_lock_key(c.name) AS key
		  FROM turnstile.counter_slot c
		 WHERE c.slot = 0
	)
	SELECT CASE h.kind WHEN 21505 THEN 'counter' ELSE 'counter slot' END AS object,
		   n.name AS counter,
		   CASE h.kind WHEN 21506 THEN h.key_low::integer END AS slot,
		   h.pid, h.mode, h.granted, h.waitstart
	  FROM held h
	  LEFT JOIN named n
		ON (n.key >> 32) & 4294967295 = h.key_high
	   AND (h.kind = 21506 OR n.key & 4294967295 = h.key_low);

COMMENT ON VIEW turnstile.locks IS
	'turnstile locks held and awaited in this database, decoded to counter names';

--
-- Privileges: nothing is usable by PUBLIC; the owner grants what a role needs.
--
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA turnstile FROM PUBLIC;
REVOKE ALL ON ALL TABLES IN SCHEMA turnstile FROM PUBLIC;
REVOKE ALL ON SCHEMA turnstile FROM PUBLIC;
