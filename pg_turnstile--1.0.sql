/* pg_turnstile--1.0.sql */

-- complain if script is sourced in psql, rather than via CREATE EXTENSION
\echo Use "CREATE EXTENSION pg_turnstile" to load this file. \quit

--
-- Storage.  One row per counter slot: a plain counter has the single slot 0,
-- a hot counter has slots 0 .. slots-1 and its value is their sum.  slots and
-- created_at are the same in every row of a counter and never change.
-- The fillfactor leaves room on each page for HOT updates of hot rows.
-- There are no CHECK constraints: the functions, the table's only writers,
-- check names and slot counts, and an UPDATE would rebuild the constraints'
-- expressions from the catalog on every increment (measured: the largest
-- user-space cost of counter_incr).
--
CREATE TABLE turnstile.counter_slot (
	name		text		NOT NULL,
	slot		integer		NOT NULL,
	slots		integer		NOT NULL,
	value		bigint		NOT NULL,
	version		bigint		NOT NULL,
	created_at	timestamptz NOT NULL,
	updated_at	timestamptz NOT NULL,
	PRIMARY KEY (name, slot)
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
-- Credentials.  A realm is a pool of accounts sharing one login service; its
-- realm_id (1 .. 32767) goes into the per-user lock tag, so it is kept small
-- and reused after a realm is dropped.  login and validate run as registered_by,
-- with the search_path that role had when it registered the realm.  Roles are
-- regrole and functions are signatures in text, not OIDs: pg_dump then writes
-- names, which a restore into another cluster resolves again, and pg_upgrade
-- accepts the table (it refuses regprocedure columns).
--
CREATE TABLE turnstile.realm (
	realm_id		integer		PRIMARY KEY CHECK (realm_id BETWEEN 1 AND 32767),
	name			text		NOT NULL UNIQUE
					CHECK (pg_catalog.char_length(name) BETWEEN 1 AND 200),
	login			text		NOT NULL,	-- schema-qualified signature, resolved at use
	validate		text,
	ttl				interval	NOT NULL CHECK (ttl > interval '0'),
	refresh_ahead	interval	NOT NULL CHECK (refresh_ahead >= interval '0' AND refresh_ahead < ttl),
	retry_after		interval	NOT NULL CHECK (retry_after >= interval '0'),
	propagation		text		NOT NULL CHECK (propagation IN ('requires_new', 'required')),
	registered_by	regrole		NOT NULL,
	search_path		text		NOT NULL	-- registered_by's, at realm_set
);

CREATE TABLE turnstile.credential (
	realm_id		integer		NOT NULL REFERENCES turnstile.realm ON DELETE CASCADE,
	user_id			bigint		NOT NULL,
	credential		text,
	invalidated		boolean		NOT NULL DEFAULT false,
	issued_at		timestamptz,
	validated_at	timestamptz,
	logins			bigint		NOT NULL DEFAULT 0,
	validations		bigint		NOT NULL DEFAULT 0,
	failures		integer		NOT NULL DEFAULT 0,
	last_error		text,
	last_sqlstate	text,
	failed_at		timestamptz,	-- blocked until failed_at + the realm's retry_after
	version			bigint		NOT NULL DEFAULT 1,
	PRIMARY KEY (realm_id, user_id)
) WITH (fillfactor = 80);

-- Who may use a realm's credentials besides its registering role and the
-- extension's owner (see realm_grant).
CREATE TABLE turnstile.realm_grant (
	realm_id		integer		NOT NULL REFERENCES turnstile.realm ON DELETE CASCADE,
	grantee			regrole		NOT NULL,
	PRIMARY KEY (realm_id, grantee)
);

REVOKE ALL ON turnstile.realm, turnstile.credential, turnstile.realm_grant FROM PUBLIC;
SELECT pg_catalog.pg_extension_config_dump('turnstile.realm', '');
SELECT pg_catalog.pg_extension_config_dump('turnstile.credential', '');
SELECT pg_catalog.pg_extension_config_dump('turnstile.realm_grant', '');

COMMENT ON TABLE turnstile.realm IS
	'pg_turnstile realms; use realm_set and realm_drop';
COMMENT ON TABLE turnstile.credential IS
	'pg_turnstile cached credentials; readable through credential_get only';

CREATE FUNCTION turnstile.realm_set(realm text, login regprocedure,
									validate regprocedure DEFAULT NULL,
									ttl interval DEFAULT '30 minutes',
									refresh_ahead interval DEFAULT '0',
									retry_after interval DEFAULT '30 seconds',
									propagation text DEFAULT 'requires_new')
RETURNS void
AS 'MODULE_PATHNAME', 'realm_set'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

COMMENT ON FUNCTION turnstile.realm_set(text, regprocedure, regprocedure, interval, interval, interval, text) IS
	'register or replace a realm: login(user_id bigint) -> text, validate(user_id bigint, credential text) -> boolean run as the calling role';

CREATE FUNCTION turnstile.realm_drop(realm text)
RETURNS boolean
AS 'MODULE_PATHNAME', 'realm_drop'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

COMMENT ON FUNCTION turnstile.realm_drop(text) IS
	'drop a realm and its cached credentials; returns true if it existed';

CREATE FUNCTION turnstile.realm_grant(realm text, grantee regrole)
RETURNS void
AS 'MODULE_PATHNAME', 'realm_grant'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

COMMENT ON FUNCTION turnstile.realm_grant(text, regrole) IS
	'let a role (and its members) use the credentials of a realm';

CREATE FUNCTION turnstile.realm_revoke(realm text, grantee regrole)
RETURNS boolean
AS 'MODULE_PATHNAME', 'realm_revoke'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

COMMENT ON FUNCTION turnstile.realm_revoke(text, regrole) IS
	'take back realm_grant; returns true if the role had been granted the realm';

CREATE FUNCTION turnstile.credential_get(user_id bigint, realm text DEFAULT 'default')
RETURNS text
AS 'MODULE_PATHNAME', 'credential_get'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

COMMENT ON FUNCTION turnstile.credential_get(bigint, text) IS
	'the credential to use now: cached while fresh, else revalidated or logged in again by exactly one caller';

CREATE FUNCTION turnstile.credential_set(user_id bigint, credential text,
										 realm text DEFAULT 'default')
RETURNS void
AS 'MODULE_PATHNAME', 'credential_set'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

COMMENT ON FUNCTION turnstile.credential_set(bigint, text, text) IS
	'store a credential obtained elsewhere as valid from now';

CREATE FUNCTION turnstile.credential_invalidate(user_id bigint, realm text DEFAULT 'default',
												credential text DEFAULT NULL)
RETURNS boolean
AS 'MODULE_PATHNAME', 'credential_invalidate'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

COMMENT ON FUNCTION turnstile.credential_invalidate(bigint, text, text) IS
	'mark the cached credential as not working (only if it still equals credential, when given); returns true if one was marked';

CREATE TYPE turnstile.credential_state AS (
	realm			text,
	user_id			bigint,
	status			text,
	issued_at		timestamptz,
	validated_at	timestamptz,
	expires_at		timestamptz,
	logins			bigint,
	validations		bigint,
	failures		integer,
	last_error		text,
	blocked_until	timestamptz
);

CREATE FUNCTION turnstile.credential_list()
RETURNS SETOF turnstile.credential_state
AS 'MODULE_PATHNAME', 'credential_list'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

COMMENT ON FUNCTION turnstile.credential_list() IS
	'every cached credential''s status, never the credential; the body of turnstile.credential_status';

CREATE VIEW turnstile.credential_status AS
	SELECT realm, user_id, status, issued_at, validated_at, expires_at,
		   logins, validations, failures, last_error, blocked_until
	  FROM turnstile.credential_list();

COMMENT ON VIEW turnstile.credential_status IS
	'one row per cached credential: status (fresh, refresh_due, expired, invalidated, failed), times and counts; never the credential itself';

--
-- Locks
--
CREATE FUNCTION turnstile.counter_lock_key(name text)
RETURNS bigint
AS 'MODULE_PATHNAME', 'counter_lock_key'
LANGUAGE C IMMUTABLE PARALLEL SAFE;

COMMENT ON FUNCTION turnstile.counter_lock_key(text) IS
	'the key of a counter''s turnstile lock, as classid << 32 | objid in pg_locks';

-- Turnstile locks are advisory locks whose objsubid is a turnstile kind, so
-- they can never be confused with pg_advisory_lock's own (objsubid 1 or 2):
-- 21505 (0x5401) a counter, 21506 (0x5402) a hot-counter slot, and for a
-- user's credential 0x8000 | realm_id, which reads as a negative smallint;
-- its classid and objid hold the user id's high and low halves.
CREATE VIEW turnstile.locks AS
	WITH held AS (
		SELECT l.objsubid::integer AS kind, l.classid::bigint AS key_high,
			   l.objid::bigint AS key_low, l.pid, l.mode, l.granted, l.waitstart
		  FROM pg_catalog.pg_locks l
		 WHERE l.locktype = 'advisory'
		   AND l.database = (SELECT d.oid FROM pg_catalog.pg_database d
							  WHERE d.datname = pg_catalog.current_database())
		   AND (l.objsubid IN (21505, 21506) OR l.objsubid < 0)
	), named AS (
		-- read through the isolation policy, like every turnstile reader
		SELECT c.name, turnstile.counter_lock_key(c.name) AS key
		  FROM turnstile.counter_list() c
	)
	SELECT CASE WHEN h.kind = 21505 THEN 'counter'
				WHEN h.kind = 21506 THEN 'counter slot'
				ELSE 'credential' END AS object,
		   n.name AS counter,
		   CASE h.kind WHEN 21506 THEN h.key_low::integer END AS slot,
		   r.name AS realm,
		   CASE WHEN h.kind < 0 THEN (h.key_high << 32 | h.key_low) END AS user_id,
		   h.pid, h.mode, h.granted, h.waitstart
	  FROM held h
	  LEFT JOIN named n
		ON h.kind > 0
	   AND (n.key >> 32) & 4294967295 = h.key_high
	   AND (h.kind = 21506 OR n.key & 4294967295 = h.key_low)
	  LEFT JOIN turnstile.realm r
		ON h.kind < 0 AND r.realm_id = h.kind + 32768;

COMMENT ON VIEW turnstile.locks IS
	'turnstile locks held and awaited in this database, decoded to counter names and realm/user ids';

--
-- Privileges: nothing is usable by PUBLIC; the owner grants what a role needs.
--
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA turnstile FROM PUBLIC;
REVOKE ALL ON ALL TABLES IN SCHEMA turnstile FROM PUBLIC;
REVOKE ALL ON SCHEMA turnstile FROM PUBLIC;
