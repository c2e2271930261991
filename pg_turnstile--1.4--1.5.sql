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
-- new function, so the EXECUTE grants on the old one do not carry over.
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

DO $$
DECLARE
	grantees text;
BEGIN
	SELECT pg_catalog.string_agg(
			   CASE WHEN a.grantee = 0 THEN 'PUBLIC'
					ELSE pg_catalog.quote_ident(a.grantee::pg_catalog.regrole::text) END,
			   ', ' ORDER BY a.grantee::pg_catalog.regrole::text)
	  INTO grantees
	  FROM pg_catalog.pg_proc p,
		   LATERAL pg_catalog.aclexplode(p.proacl) a
	 WHERE p.oid = 'turnstile.counter_create_before_1_5(text, bigint, integer)'::pg_catalog.regprocedure
	   AND a.privilege_type = 'EXECUTE' AND a.grantee <> p.proowner;
	IF grantees IS NOT NULL THEN
		RAISE WARNING 'counter_create has two more arguments (lower, upper) in pg_turnstile 1.5, and its grants are gone'
			USING HINT = pg_catalog.format(
				'After the update, run: GRANT EXECUTE ON FUNCTION turnstile.counter_create(text, bigint, integer, bigint, bigint) TO %s;',
				grantees);
	END IF;
END
$$;

DROP FUNCTION turnstile.counter_create_before_1_5(text, bigint, integer);

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
