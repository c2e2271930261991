/* pg_turnstile--1.1--1.2.sql */

-- complain if script is sourced in psql, rather than via ALTER EXTENSION
\echo Use "ALTER EXTENSION pg_turnstile UPDATE TO '1.2'" to load this file. \quit

--
-- The refresh pool (with pg_turnstile in shared_preload_libraries): its
-- workers and the refreshes waiting for one.
--
CREATE FUNCTION turnstile.refresh_pool_state(OUT pid integer, OUT database text,
											 OUT state text, OUT user_id bigint,
											 OUT realm text, OUT since timestamptz)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'refresh_pool_state'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

REVOKE ALL ON FUNCTION turnstile.refresh_pool_state() FROM PUBLIC;

COMMENT ON FUNCTION turnstile.refresh_pool_state() IS
	'the refresh pool''s workers and queued refreshes; the body of turnstile.refresh_pool';

CREATE VIEW turnstile.refresh_pool AS
	SELECT pid, database, state, user_id, realm, since
	  FROM turnstile.refresh_pool_state();

REVOKE ALL ON turnstile.refresh_pool FROM PUBLIC;

COMMENT ON VIEW turnstile.refresh_pool IS
	'one row per refresh pool worker (state starting, idle, refreshing or leaving) and per refresh queued for one (state queued); empty unless pg_turnstile is in shared_preload_libraries';
