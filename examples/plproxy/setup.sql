-- examples/plproxy/setup.sql — the proxy database of the PL/Proxy example.
--
-- pg_turnstile is exact because every call for a key takes that key's lock
-- in the one database that holds the key.  Sharding keeps that true as long
-- as every key has exactly one home: here every call for a counter goes to
-- the shard that hashtext(name) picks, and every call for a user's
-- credential to the shard that hashint8(user_id) picks, so each shard serves
-- its keys as a single pg_turnstile database would.  The proxy holds no
-- turnstile state of its own; it only routes.
--
-- The proxy functions live in a schema named turnstile and have the
-- signatures of the extension's functions, so an application runs the same
-- SQL against the proxy as against one pg_turnstile database.  Each proxied
-- call runs on its shard in a transaction of its own, committed when the
-- call returns: a ROLLBACK on the proxy does not undo it.
--
-- Run it in the proxy database as a superuser (CREATE EXTENSION plproxy
-- needs one), with the shards' libpq connection strings in the psql
-- variable shards, separated by ";".  Their number must be a power of 2,
-- and their order is the shard numbering: never reorder them, and never
-- change their number without moving every key to its new shard.
--
--   psql -v ON_ERROR_STOP=1 -d proxy -f examples/plproxy/setup.sql \
--     -v shards='host=db0 dbname=turnstile connect_timeout=5;host=db1 dbname=turnstile connect_timeout=5'
--
-- Running it again replaces the cluster configuration and the functions,
-- in one transaction.  It refuses to change the number of shards of an
-- existing cluster, because that sends keys to shards that do not hold
-- them; after moving every key yourself, pass -v reshard=yes.

\set ON_ERROR_STOP 1
SET client_min_messages = warning;
\if :{?shards}
\else
DO $$ BEGIN
	RAISE EXCEPTION 'the psql variable shards is not set'
		USING HINT = 'Run psql with -v shards=''CONNINFO;CONNINFO;...'', one libpq connection string per shard.';
END $$;
\endif
BEGIN;

CREATE EXTENSION IF NOT EXISTS plproxy;

--
-- The cluster: one SQL/MED server whose options p0, p1, ... are the shards.
-- PL/Proxy connects to a shard as the role that calls the proxy function
-- (the user mapping adds no user= or password), so that role must be able
-- to log in on every shard and hold the grants pg_turnstile's README lists.
--
SELECT pg_catalog.count(*) AS new_count
  FROM pg_catalog.unnest(pg_catalog.string_to_array(:'shards', ';')) AS s(conninfo)
 WHERE pg_catalog.btrim(conninfo) <> ''
\gset
SELECT pg_catalog.count(*) AS old_count
  FROM pg_catalog.pg_foreign_server s, pg_catalog.unnest(s.srvoptions) o
 WHERE s.srvname = 'turnstile_cluster' AND o OPERATOR(pg_catalog.~) '^p[0-9]+='
\gset
SELECT 'DO $empty$ BEGIN RAISE EXCEPTION ''the psql variable shards names no shard''; END $empty$'
 WHERE :new_count = 0
\gexec
\if :{?reshard}
\else
SELECT pg_catalog.format(
		'DO $guard$ BEGIN RAISE EXCEPTION %L USING HINT = %L; END $guard$',
		pg_catalog.format('turnstile_cluster has %s shards, not %s', :old_count, :new_count),
		'Changing the number of shards sends keys to shards that do not hold them. '
		'Move every key to its new shard, then run this again with -v reshard=yes.')
 WHERE :old_count NOT IN (0, :new_count)
\gexec
\endif

DROP SERVER IF EXISTS turnstile_cluster CASCADE;

SELECT pg_catalog.format(
		'CREATE SERVER turnstile_cluster FOREIGN DATA WRAPPER plproxy OPTIONS (connection_lifetime %L, %s)',
		'1800',
		pg_catalog.string_agg(pg_catalog.format('p%s %L', n - 1, conninfo), ', ' ORDER BY n))
  FROM (SELECT pg_catalog.btrim(c) AS conninfo,
			   pg_catalog.row_number() OVER (ORDER BY i) AS n
		  FROM pg_catalog.unnest(pg_catalog.string_to_array(:'shards', ';'))
			   WITH ORDINALITY AS s(c, i)
		 WHERE pg_catalog.btrim(c) <> '') s
\gexec

CREATE USER MAPPING FOR PUBLIC SERVER turnstile_cluster;

CREATE SCHEMA IF NOT EXISTS turnstile;

-- The row types of pg_turnstile's counter_info, counter_list and
-- credential_list, for the proxy functions that return them: read from
-- shard 0's pg_turnstile, so that they are the shards' own, also after an
-- ALTER EXTENSION ... UPDATE there (run this file again then).  The proxy's
-- functions and views that use them are dropped first and created again
-- below; an object of yours that uses them stops this file with an error
-- and nothing changes.
CREATE OR REPLACE FUNCTION turnstile.shard_row_type(type_name text) RETURNS text AS $$
	CLUSTER 'turnstile_cluster';
	RUN ON 0;
	SELECT pg_catalog.string_agg(pg_catalog.format('%I %s', a.attname,
								 pg_catalog.format_type(a.atttypid, a.atttypmod)),
								 ', ' ORDER BY a.attnum)
	  FROM pg_catalog.pg_type t
	  JOIN pg_catalog.pg_attribute a ON a.attrelid OPERATOR(pg_catalog.=) t.typrelid
	 WHERE t.oid OPERATOR(pg_catalog.=) pg_catalog.to_regtype($1)
	   AND a.attnum OPERATOR(pg_catalog.>) 0 AND NOT a.attisdropped;
$$ LANGUAGE plproxy;

DROP VIEW IF EXISTS turnstile.counters, turnstile.credential_status;
DROP FUNCTION IF EXISTS turnstile.counter_info(text), turnstile.counter_list(),
	turnstile.credential_list();
DROP TYPE IF EXISTS turnstile.counter_state, turnstile.credential_state;
SELECT pg_catalog.format('CREATE TYPE turnstile.%I AS (%s)', type_name, columns)
  FROM (SELECT type_name, turnstile.shard_row_type('turnstile.' OPERATOR(pg_catalog.||) type_name)
		  FROM (VALUES ('counter_state'), ('credential_state')) v(type_name)) t(type_name, columns)
 WHERE columns IS NOT NULL
\gexec
SELECT 'DO $missing$ BEGIN RAISE EXCEPTION ''shard 0 has no pg_turnstile row types'' USING HINT = ''Set up every shard with shard.sql first.''; END $missing$'
 WHERE pg_catalog.to_regtype('turnstile.counter_state') IS NULL
	OR pg_catalog.to_regtype('turnstile.credential_state') IS NULL
\gexec
DROP FUNCTION turnstile.shard_row_type(text);

--
-- Where a key lives: the shard numbers PL/Proxy computes (hash & (N - 1)),
-- for people and views; the routing itself is in the RUN ON lines below.
--
CREATE OR REPLACE FUNCTION turnstile.shard_count() RETURNS integer
LANGUAGE sql STABLE AS $$
	SELECT pg_catalog.count(*)::integer
	  FROM pg_catalog.pg_foreign_server s,
		   pg_catalog.unnest(s.srvoptions) o
	 WHERE s.srvname = 'turnstile_cluster' AND o OPERATOR(pg_catalog.~) '^p[0-9]+='
$$;

CREATE OR REPLACE FUNCTION turnstile.counter_shard(name text) RETURNS integer
LANGUAGE sql STABLE AS $$
	SELECT pg_catalog.hashtext(name) OPERATOR(pg_catalog.&) (turnstile.shard_count() - 1)
$$;

CREATE OR REPLACE FUNCTION turnstile.credential_shard(user_id bigint) RETURNS integer
LANGUAGE sql STABLE AS $$
	SELECT pg_catalog.hashint8(user_id) OPERATOR(pg_catalog.&) (turnstile.shard_count() - 1)
$$;

--
-- Counters: every call for a name runs on the shard hashtext(name) picks.
-- A NULL name is sent to a shard anyway (coalesce), so that the caller gets
-- pg_turnstile's own error for it.
--
-- (before pg_turnstile 1.5, counter_create had no bounds)
DROP FUNCTION IF EXISTS turnstile.counter_create(text, bigint, integer);
CREATE OR REPLACE FUNCTION turnstile.counter_create(name text, initial bigint DEFAULT 0,
													slots integer DEFAULT 1,
													lower bigint DEFAULT NULL,
													upper bigint DEFAULT NULL)
RETURNS bigint AS $$
	CLUSTER 'turnstile_cluster';
	RUN ON pg_catalog.hashtext(coalesce(name, ''));
	TARGET turnstile.counter_create;
$$ LANGUAGE plproxy;

-- A counter's bounds are kept and enforced on its shard, like its value.
CREATE OR REPLACE FUNCTION turnstile.counter_bounds(name text, lower bigint, upper bigint)
RETURNS void AS $$
	CLUSTER 'turnstile_cluster';
	RUN ON pg_catalog.hashtext(coalesce(name, ''));
	TARGET turnstile.counter_bounds;
$$ LANGUAGE plproxy;

CREATE OR REPLACE FUNCTION turnstile.counter_try_incr(name text, delta bigint,
													  clamp boolean DEFAULT false,
													  OUT applied boolean, OUT value bigint,
													  OUT applied_delta bigint)
RETURNS record AS $$
	CLUSTER 'turnstile_cluster';
	RUN ON pg_catalog.hashtext(coalesce(name, ''));
	TARGET turnstile.counter_try_incr;
$$ LANGUAGE plproxy;

CREATE OR REPLACE FUNCTION turnstile.counter_incr(name text, delta bigint DEFAULT 1)
RETURNS bigint AS $$
	CLUSTER 'turnstile_cluster';
	RUN ON pg_catalog.hashtext(coalesce(name, ''));
	TARGET turnstile.counter_incr;
$$ LANGUAGE plproxy;

CREATE OR REPLACE FUNCTION turnstile.counter_incr(name text, delta bigint, expected bigint)
RETURNS bigint AS $$
	CLUSTER 'turnstile_cluster';
	RUN ON pg_catalog.hashtext(coalesce(name, ''));
	TARGET turnstile.counter_incr;
$$ LANGUAGE plproxy;

-- The idempotency key is kept on the counter's shard, with the counter.
CREATE OR REPLACE FUNCTION turnstile.counter_incr_once(name text, delta bigint, key text)
RETURNS bigint AS $$
	CLUSTER 'turnstile_cluster';
	RUN ON pg_catalog.hashtext(coalesce(name, ''));
	TARGET turnstile.counter_incr_once;
$$ LANGUAGE plproxy;

-- A rate limit's key lives on one shard, which counts all of its calls.  The
-- forms with and without cost are two functions, as on the shards since
-- pg_turnstile 1.5 (before, cost had a DEFAULT, which a function without it
-- cannot sit beside: that one goes).  Shards before 1.5 take the call
-- without cost through their DEFAULT.
SELECT 'DROP FUNCTION turnstile.rate_limit(text, bigint, interval, bigint)'
 WHERE EXISTS (SELECT FROM pg_catalog.pg_proc p
				WHERE p.oid OPERATOR(pg_catalog.=)
					  pg_catalog.to_regprocedure('turnstile.rate_limit(text, bigint, interval, bigint)')
				  AND p.pronargdefaults OPERATOR(pg_catalog.>) 0)
\gexec
CREATE OR REPLACE FUNCTION turnstile.rate_limit(key text, max bigint, per interval,
												OUT allowed boolean, OUT count bigint,
												OUT remaining bigint, OUT reset_at timestamptz)
RETURNS record AS $$
	CLUSTER 'turnstile_cluster';
	RUN ON pg_catalog.hashtext(coalesce(key, ''));
	TARGET turnstile.rate_limit;
$$ LANGUAGE plproxy;

CREATE OR REPLACE FUNCTION turnstile.rate_limit(key text, max bigint, per interval, cost bigint,
												OUT allowed boolean, OUT count bigint,
												OUT remaining bigint, OUT reset_at timestamptz)
RETURNS record AS $$
	CLUSTER 'turnstile_cluster';
	RUN ON pg_catalog.hashtext(coalesce(key, ''));
	TARGET turnstile.rate_limit;
$$ LANGUAGE plproxy;

CREATE OR REPLACE FUNCTION turnstile.counter_decr(name text, delta bigint DEFAULT 1)
RETURNS bigint AS $$
	CLUSTER 'turnstile_cluster';
	RUN ON pg_catalog.hashtext(coalesce(name, ''));
	TARGET turnstile.counter_decr;
$$ LANGUAGE plproxy;

CREATE OR REPLACE FUNCTION turnstile.counter_cas(name text, expected bigint, new_value bigint,
												 OUT applied boolean, OUT value bigint,
												 OUT version bigint, OUT updated_at timestamptz)
RETURNS record AS $$
	CLUSTER 'turnstile_cluster';
	RUN ON pg_catalog.hashtext(coalesce(name, ''));
	TARGET turnstile.counter_cas;
$$ LANGUAGE plproxy;

CREATE OR REPLACE FUNCTION turnstile.counter_get(name text)
RETURNS bigint AS $$
	CLUSTER 'turnstile_cluster';
	RUN ON pg_catalog.hashtext(coalesce(name, ''));
	TARGET turnstile.counter_get;
$$ LANGUAGE plproxy;

CREATE OR REPLACE FUNCTION turnstile.counter_set(name text, value bigint)
RETURNS bigint AS $$
	CLUSTER 'turnstile_cluster';
	RUN ON pg_catalog.hashtext(coalesce(name, ''));
	TARGET turnstile.counter_set;
$$ LANGUAGE plproxy;

CREATE OR REPLACE FUNCTION turnstile.counter_info(name text)
RETURNS SETOF turnstile.counter_state ROWS 1 AS $$
	CLUSTER 'turnstile_cluster';
	RUN ON pg_catalog.hashtext(coalesce(name, ''));
	TARGET turnstile.counter_info;
$$ LANGUAGE plproxy;

CREATE OR REPLACE FUNCTION turnstile.counter_drop(name text)
RETURNS boolean AS $$
	CLUSTER 'turnstile_cluster';
	RUN ON pg_catalog.hashtext(coalesce(name, ''));
	TARGET turnstile.counter_drop;
$$ LANGUAGE plproxy;

--
-- Credentials: every call for a user runs on the shard hashint8(user_id)
-- picks, whatever the realm, so a user's lock and cached credential have one
-- home.  Every shard must have the same realms (examples/plproxy/shard.sql).
--
CREATE OR REPLACE FUNCTION turnstile.credential_get(user_id bigint, realm text DEFAULT 'default')
RETURNS text AS $$
	CLUSTER 'turnstile_cluster';
	RUN ON pg_catalog.hashint8(coalesce(user_id, 0));
	TARGET turnstile.credential_get;
$$ LANGUAGE plproxy;

CREATE OR REPLACE FUNCTION turnstile.credential_set(user_id bigint, credential text,
													realm text DEFAULT 'default')
RETURNS void AS $$
	CLUSTER 'turnstile_cluster';
	RUN ON pg_catalog.hashint8(coalesce(user_id, 0));
	TARGET turnstile.credential_set;
$$ LANGUAGE plproxy;

CREATE OR REPLACE FUNCTION turnstile.credential_invalidate(user_id bigint,
														   realm text DEFAULT 'default',
														   credential text DEFAULT NULL)
RETURNS boolean AS $$
	CLUSTER 'turnstile_cluster';
	RUN ON pg_catalog.hashint8(coalesce(user_id, 0));
	TARGET turnstile.credential_invalidate;
$$ LANGUAGE plproxy;

--
-- Fan-out: the lists run on every shard at once (RUN ON ALL) and the views
-- put their rows together, with the shard each row came from.  They fail
-- if any shard is down.
--
CREATE OR REPLACE FUNCTION turnstile.counter_list()
RETURNS SETOF turnstile.counter_state AS $$
	CLUSTER 'turnstile_cluster';
	RUN ON ALL;
	TARGET turnstile.counter_list;
$$ LANGUAGE plproxy;

CREATE OR REPLACE FUNCTION turnstile.credential_list()
RETURNS SETOF turnstile.credential_state AS $$
	CLUSTER 'turnstile_cluster';
	RUN ON ALL;
	TARGET turnstile.credential_list;
$$ LANGUAGE plproxy;

-- (every column of the shards' counter_state, bounds included since 1.5)
CREATE OR REPLACE VIEW turnstile.counters AS
	SELECT turnstile.counter_shard(c.name) AS shard, c.*
	  FROM turnstile.counter_list() c;

CREATE OR REPLACE VIEW turnstile.credential_status AS
	SELECT turnstile.credential_shard(c.user_id) AS shard,
		   c.realm, c.user_id, c.status, c.issued_at, c.validated_at, c.expires_at,
		   c.logins, c.validations, c.failures, c.last_error, c.blocked_until
	  FROM turnstile.credential_list() c;

-- As in pg_turnstile itself, nothing is usable by PUBLIC: grant an
-- application role USAGE on the schema and on SERVER turnstile_cluster,
-- EXECUTE on the functions it needs and SELECT on the views, here and the
-- matching grants on every shard.
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA turnstile FROM PUBLIC;
REVOKE ALL ON ALL TABLES IN SCHEMA turnstile FROM PUBLIC;
REVOKE ALL ON SCHEMA turnstile FROM PUBLIC;
-- The views call these with the privileges of whoever queries them; they
-- only compute shard numbers, so whoever may use the schema may call them.
GRANT EXECUTE ON FUNCTION turnstile.shard_count(), turnstile.counter_shard(text),
	turnstile.credential_shard(bigint) TO PUBLIC;

COMMIT;
