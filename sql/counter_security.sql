--
-- counter_security: who may use the counters, and that nothing a caller
-- controls (search_path, operators, errors) changes what the functions do.
--
-- The roles are cluster-wide: drop any left behind by an interrupted run.
--
\set SHOW_CONTEXT never
SET client_min_messages = warning;
DO $$
DECLARE
	r text;
BEGIN
	FOREACH r IN ARRAY ARRAY['turnstile_app', 'turnstile_nobody'] LOOP
		IF EXISTS (SELECT FROM pg_roles WHERE rolname = r) THEN
			EXECUTE format('DROP OWNED BY %I', r);
			EXECUTE format('DROP ROLE %I', r);
		END IF;
	END LOOP;
END $$;
DROP SCHEMA IF EXISTS evil CASCADE;
RESET client_min_messages;

CREATE ROLE turnstile_app LOGIN;
CREATE ROLE turnstile_nobody LOGIN;
SELECT turnstile.counter_set('sec', 10);

--
-- After CREATE EXTENSION, PUBLIC has no privilege on anything in the schema:
-- not the schema itself, no function, no table or view.
--
SELECT has_schema_privilege('public', 'turnstile', 'USAGE') AS schema_usage;
SELECT p.oid::regprocedure AS executable_by_public
  FROM pg_proc p
 WHERE p.pronamespace = 'turnstile'::regnamespace
   AND has_function_privilege('public', p.oid, 'EXECUTE')
 ORDER BY 1;
SELECT c.oid::regclass AS accessible_to_public, c.relkind
  FROM pg_class c
 WHERE c.relnamespace = 'turnstile'::regnamespace
   AND c.relkind IN ('r', 'v', 'm', 'S', 'f', 'p')
   AND has_table_privilege('public', c.oid,
                           'SELECT, INSERT, UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER')
 ORDER BY 1;

-- No SECURITY DEFINER function leaves search_path to the caller.
SELECT p.oid::regprocedure AS definer_without_search_path
  FROM pg_proc p
 WHERE p.pronamespace = 'turnstile'::regnamespace
   AND p.prosecdef
   AND NOT EXISTS (SELECT FROM unnest(p.proconfig) AS c(setting)
                    WHERE c.setting LIKE 'search\_path=%')
 ORDER BY 1;

--
-- A role without grants can use nothing (42501).
--
SET ROLE turnstile_nobody;
SELECT turnstile.counter_incr('sec');
\echo :LAST_ERROR_SQLSTATE
SELECT turnstile.counter_get('sec');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM turnstile.counters;
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM turnstile.counter_slot;
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;

--
-- USAGE on the schema alone is not enough: every function needs EXECUTE,
-- and the view needs SELECT.
--
GRANT USAGE ON SCHEMA turnstile TO turnstile_app;
SET ROLE turnstile_app;
SELECT turnstile.counter_incr('sec');
\echo :LAST_ERROR_SQLSTATE
SELECT turnstile.counter_get('sec');
\echo :LAST_ERROR_SQLSTATE
SELECT name, value FROM turnstile.counters;
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;

-- The grants an application role needs for the counters.
GRANT EXECUTE ON FUNCTION
	turnstile.counter_create(text, bigint, integer, bigint, bigint),
	turnstile.counter_incr(text, bigint),
	turnstile.counter_incr(text, bigint, bigint),
	turnstile.counter_decr(text, bigint),
	turnstile.counter_cas(text, bigint, bigint),
	turnstile.counter_get(text),
	turnstile.counter_set(text, bigint),
	turnstile.counter_info(text),
	turnstile.counter_drop(text)
	TO turnstile_app;
GRANT SELECT ON turnstile.counters TO turnstile_app;

SET ROLE turnstile_app;
SELECT turnstile.counter_create('sec_app', 5);
SELECT turnstile.counter_incr('sec');
SELECT turnstile.counter_incr('sec', 4);
SELECT turnstile.counter_decr('sec');
SELECT turnstile.counter_incr('sec', 1, 14);
SELECT applied, value, version FROM turnstile.counter_cas('sec', 15, 20);
SELECT turnstile.counter_get('sec');
SELECT turnstile.counter_set('sec_app', 6);
SELECT name, value, version, slots FROM turnstile.counter_info('sec');
SELECT turnstile.counter_create('sec_hot', 1, 4);
SELECT turnstile.counter_incr('sec_hot', 2);
SELECT turnstile.counter_drop('sec_hot');
-- The view's rows come from turnstile.counter_list(), and a function in a
-- view runs with the privileges of whoever queries the view: SELECT on the
-- view is not enough, the role needs EXECUTE on counter_list() as well.
SELECT name, value FROM turnstile.counters ORDER BY name;
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;
GRANT EXECUTE ON FUNCTION turnstile.counter_list() TO turnstile_app;
SET ROLE turnstile_app;
SELECT name, value FROM turnstile.counters WHERE name LIKE 'sec%' ORDER BY name;
-- The same holds for turnstile.locks, which calls key_holders() and
-- counter_lock_key().
BEGIN;
SELECT turnstile.counter_incr('sec');
SELECT object, counter, mode FROM turnstile.locks WHERE pid = pg_backend_pid();
\echo :LAST_ERROR_SQLSTATE
ROLLBACK;
RESET ROLE;
GRANT SELECT ON turnstile.locks TO turnstile_app;
SET ROLE turnstile_app;
BEGIN;
SELECT turnstile.counter_incr('sec');
SELECT object, counter, mode FROM turnstile.locks WHERE pid = pg_backend_pid();
\echo :LAST_ERROR_SQLSTATE
ROLLBACK;
RESET ROLE;
GRANT EXECUTE ON FUNCTION turnstile.counter_lock_key(text), turnstile.key_holders()
  TO turnstile_app;
SET ROLE turnstile_app;
BEGIN;
SELECT turnstile.counter_incr('sec');
SELECT object, counter, mode FROM turnstile.locks WHERE pid = pg_backend_pid();
ROLLBACK;

-- With all of that, the table itself stays out of reach.
SELECT * FROM turnstile.counter_slot;
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) FROM turnstile.counter_slot;
\echo :LAST_ERROR_SQLSTATE
INSERT INTO turnstile.counter_slot VALUES ('sec_forged', 0, 1, 1000, 1, now(), now());
\echo :LAST_ERROR_SQLSTATE
UPDATE turnstile.counter_slot SET value = 1000 WHERE name = 'sec';
\echo :LAST_ERROR_SQLSTATE
DELETE FROM turnstile.counter_slot;
\echo :LAST_ERROR_SQLSTATE
TRUNCATE turnstile.counter_slot;
\echo :LAST_ERROR_SQLSTATE
-- ... and the role is still itself after the functions used it
SELECT current_user;
RESET ROLE;

--
-- An error raised while a function works on the table (as its owner) leaves
-- the caller's identity intact, in a savepoint and at top level.
--
SELECT turnstile.counter_set('sec_top', 9223372036854775807);
SET ROLE turnstile_app;
BEGIN;
SAVEPOINT s;
SELECT turnstile.counter_incr('sec_top');
\echo :LAST_ERROR_SQLSTATE
ROLLBACK TO SAVEPOINT s;
SELECT current_user;
SELECT count(*) FROM turnstile.counter_slot;
\echo :LAST_ERROR_SQLSTATE
ROLLBACK;
SELECT turnstile.counter_incr('sec_top', 1, 0);
\echo :LAST_ERROR_SQLSTATE
SELECT current_user;
SELECT count(*) FROM turnstile.counter_slot;
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;

--
-- A hostile search_path does not redirect anything the functions run: a
-- schema that shadows the pg_catalog functions and operators they use, put
-- before pg_catalog.
--
CREATE SCHEMA evil;
CREATE FUNCTION evil.trap(bigint, bigint) RETURNS bigint
	LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'evil operator called'; END $$;
CREATE FUNCTION evil.trap(integer, integer) RETURNS integer
	LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'evil operator called'; END $$;
CREATE FUNCTION evil.trap_cmp(text, text) RETURNS boolean
	LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'evil operator called'; END $$;
CREATE FUNCTION evil.trap_cmp(bigint, bigint) RETURNS boolean
	LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'evil operator called'; END $$;
CREATE FUNCTION evil.trap_cmp(integer, integer) RETURNS boolean
	LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'evil operator called'; END $$;
CREATE OPERATOR evil.+ (LEFTARG = bigint, RIGHTARG = bigint, FUNCTION = evil.trap);
CREATE OPERATOR evil.+ (LEFTARG = integer, RIGHTARG = integer, FUNCTION = evil.trap);
CREATE OPERATOR evil.- (LEFTARG = integer, RIGHTARG = integer, FUNCTION = evil.trap);
CREATE OPERATOR evil.= (LEFTARG = text, RIGHTARG = text, FUNCTION = evil.trap_cmp);
CREATE OPERATOR evil.= (LEFTARG = integer, RIGHTARG = integer, FUNCTION = evil.trap_cmp);
CREATE OPERATOR evil.<> (LEFTARG = integer, RIGHTARG = integer, FUNCTION = evil.trap_cmp);
CREATE OPERATOR evil.>= (LEFTARG = bigint, RIGHTARG = bigint, FUNCTION = evil.trap_cmp);
CREATE OPERATOR evil.<= (LEFTARG = bigint, RIGHTARG = bigint, FUNCTION = evil.trap_cmp);
CREATE OPERATOR evil.> (LEFTARG = integer, RIGHTARG = integer, FUNCTION = evil.trap_cmp);
CREATE FUNCTION evil.clock_timestamp() RETURNS timestamptz
	LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'evil clock_timestamp called'; END $$;
CREATE FUNCTION evil.generate_series(integer, integer) RETURNS SETOF integer
	LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'evil generate_series called'; END $$;
CREATE FUNCTION evil.sum_step(bigint, bigint) RETURNS bigint
	LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'evil sum called'; END $$;
CREATE AGGREGATE evil.sum(bigint) (SFUNC = evil.sum_step, STYPE = bigint);
CREATE TABLE evil.counter_slot (LIKE turnstile.counter_slot);
GRANT USAGE ON SCHEMA evil TO turnstile_app;
GRANT ALL ON evil.counter_slot TO turnstile_app;

-- With the hostile path, an unqualified call does reach the traps ...
SET search_path = evil, pg_catalog, public;
SELECT 1::bigint + 1::bigint;
\echo :LAST_ERROR_SQLSTATE
SELECT clock_timestamp();
\echo :LAST_ERROR_SQLSTATE
-- ... but the counter functions do not, for a superuser ...
SELECT turnstile.counter_incr('sec', 1);
SELECT turnstile.counter_create('sec_evil', 5, 4);
SELECT turnstile.counter_incr('sec_evil', 2);
SELECT turnstile.counter_incr('sec_evil', 3, 7);
SELECT applied, value FROM turnstile.counter_cas('sec_evil', 10, 11);
SELECT turnstile.counter_set('sec_evil', 12);
SELECT turnstile.counter_decr('sec_evil', 2);
SELECT turnstile.counter_get('sec_evil');
SELECT name, value, slots FROM turnstile.counter_info('sec_evil');
SELECT name, value, slots FROM turnstile.counters WHERE name LIKE 'sec%' ORDER BY name;
SELECT turnstile.counter_drop('sec_evil');
RESET search_path;

-- ... nor for the application role, in a fresh session whose statements
-- are all prepared under the hostile path.
\c -
SET ROLE turnstile_app;
SET search_path = evil, pg_catalog, public;
SELECT 1::integer + 1::integer;
\echo :LAST_ERROR_SQLSTATE
SELECT turnstile.counter_get('sec');
SELECT turnstile.counter_incr('sec', 1);
SELECT turnstile.counter_create('sec_evil', 5, 4);
SELECT turnstile.counter_incr('sec_evil', 2);
SELECT turnstile.counter_decr('sec_evil', 1);
SELECT turnstile.counter_incr('sec_evil', 3, 6);
SELECT applied, value FROM turnstile.counter_cas('sec_evil', 9, 11);
SELECT turnstile.counter_set('sec_evil', 12);
SELECT name, value, slots FROM turnstile.counter_info('sec_evil');
SELECT name, value, slots FROM turnstile.counters WHERE name LIKE 'sec%' ORDER BY name;
-- (this query's own "=" is qualified: unqualified, it would find evil.=)
BEGIN;
SELECT turnstile.counter_incr('sec_evil');
SELECT object, counter, mode FROM turnstile.locks
 WHERE pid OPERATOR(pg_catalog.=) pg_catalog.pg_backend_pid()
 ORDER BY object;
COMMIT;
SELECT turnstile.counter_drop('sec_evil');
-- the decoy table was never written
SELECT count(*) AS decoy_rows FROM evil.counter_slot;
RESET search_path;
RESET ROLE;

--
-- turnstile.rate_limits reads through rate_limit_list(): SELECT on the view
-- is not enough, as for turnstile.counters.
--
SELECT allowed, count FROM turnstile.rate_limit('sec-rate', 5, '1000 days');
GRANT SELECT ON turnstile.rate_limits TO turnstile_app;
SET ROLE turnstile_app;
SELECT key, count FROM turnstile.rate_limits WHERE key = 'sec-rate';
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;
GRANT EXECUTE ON FUNCTION turnstile.rate_limit_list() TO turnstile_app;
SET ROLE turnstile_app;
SELECT key, count FROM turnstile.rate_limits WHERE key = 'sec-rate';
-- ... and the function reads the table as its owner, not the caller
SELECT count(*) FROM turnstile.rate_limit;
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;
DELETE FROM turnstile.rate_limit WHERE key = 'sec-rate';

--
-- The idempotency window is superuser-only: every session removes the keys
-- older than its own window, whoever made them, so an application role that
-- could shorten it would make other clients' retries apply again.  GRANT
-- SET ON PARAMETER lets a role set it.
--
SET ROLE turnstile_app;
SET turnstile.idempotency_window = '1 second';
\echo :LAST_ERROR_SQLSTATE
SELECT set_config('turnstile.idempotency_window', '1 second', false);
\echo :LAST_ERROR_SQLSTATE
SHOW turnstile.idempotency_window;
RESET ROLE;
GRANT SET ON PARAMETER turnstile.idempotency_window TO turnstile_app;
SET ROLE turnstile_app;
SET turnstile.idempotency_window = '48 hours';
SHOW turnstile.idempotency_window;
RESET turnstile.idempotency_window;
RESET ROLE;
REVOKE SET ON PARAMETER turnstile.idempotency_window FROM turnstile_app;

--
-- Clean up: the roles' grants go with DROP OWNED.
--
SELECT name, turnstile.counter_drop(name) FROM turnstile.counters
 WHERE name LIKE 'sec%' ORDER BY name;
SET client_min_messages = warning;
DROP SCHEMA evil CASCADE;
RESET client_min_messages;
DROP OWNED BY turnstile_app, turnstile_nobody;
DROP ROLE turnstile_app;
DROP ROLE turnstile_nobody;
-- nothing in the schema is left granted to anyone but its owner
SELECT count(*) AS foreign_grants
  FROM pg_proc p, aclexplode(p.proacl) a
 WHERE p.pronamespace = 'turnstile'::regnamespace
   AND a.grantee <> p.proowner;
