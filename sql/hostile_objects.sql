--
-- hostile_objects: what the extension looks up again at run time is checked
-- again at run time.  A realm's functions replaced after realm_set, the
-- extension's own tables and types altered, the registering role dropped, a
-- caller inside a security-restricted operation: each gives a clear error
-- with its SQLSTATE (echoed after each failing statement), never a crash and
-- never a wrong value, and changes nothing.
--
CREATE EXTENSION IF NOT EXISTS pg_turnstile;
\set SHOW_CONTEXT never
\set VERBOSITY terse
SET statement_timeout = '30s';

CREATE SCHEMA hostile;
CREATE FUNCTION hostile.login(bigint) RETURNS text
	LANGUAGE sql AS $$ SELECT 'tok-' || $1 $$;
CREATE FUNCTION hostile.validate(bigint, text) RETURNS boolean
	LANGUAGE sql AS $$ SELECT false $$;
SELECT turnstile.realm_set('hostile_req', 'hostile.login(bigint)',
                           'hostile.validate(bigint,text)', '1 hour', '0', '0',
                           'required');
SELECT turnstile.realm_set('hostile_new', 'hostile.login(bigint)',
                           'hostile.validate(bigint,text)', '1 hour', '0', '0',
                           'requires_new');
SELECT turnstile.credential_get(1, 'hostile_req'), turnstile.credential_get(1, 'hostile_new');

--
-- 1. The login function replaced by one returning integer: once a crash
-- (signal 11) in the caller, or in the refresh worker.  Now 42P13, for
-- both propagations, and the cached credential stays as it was.
--
DROP FUNCTION hostile.login(bigint);
CREATE FUNCTION hostile.login(bigint) RETURNS integer
	LANGUAGE sql AS $$ SELECT 42 $$;
SELECT turnstile.credential_get(2, 'hostile_req');
\echo :LAST_ERROR_SQLSTATE
SELECT turnstile.credential_get(2, 'hostile_new');
\echo :LAST_ERROR_SQLSTATE
SELECT turnstile.credential_invalidate(1, 'hostile_req');
SELECT turnstile.credential_get(1, 'hostile_req');
\echo :LAST_ERROR_SQLSTATE
SELECT realm, user_id, status, logins FROM turnstile.credential_status
 WHERE realm LIKE 'hostile%' ORDER BY realm, user_id;

-- returning bytea: once stored bytes invalid in the database's encoding
DROP FUNCTION hostile.login(bigint);
CREATE FUNCTION hostile.login(bigint) RETURNS bytea
	LANGUAGE sql AS $$ SELECT '\xfffe41'::bytea $$;
SELECT turnstile.credential_get(2, 'hostile_req');
\echo :LAST_ERROR_SQLSTATE

-- 9. an aggregate of the same signature: once an internal error (42883
-- "aggregate_dummy")
DROP FUNCTION hostile.login(bigint);
CREATE AGGREGATE hostile.login(bigint) (SFUNC = int8pl, STYPE = bigint);
SELECT turnstile.credential_get(2, 'hostile_req');
\echo :LAST_ERROR_SQLSTATE
DROP AGGREGATE hostile.login(bigint);

--
-- 3. Text that is not valid in the database's encoding, from a function
-- whose declared types fit (an internal function can return any bytes;
-- int8send of -1 is eight 0xff bytes, of 1 seven zero bytes and a 1).
-- 22021, naming the user and realm, and nothing stored.
--
CREATE FUNCTION hostile.login(bigint) RETURNS text
	LANGUAGE internal STRICT AS 'int8send';
SELECT turnstile.credential_get(-1, 'hostile_req');
\echo :LAST_ERROR_SQLSTATE
SELECT turnstile.credential_get(1, 'hostile_req');
\echo :LAST_ERROR_SQLSTATE
SELECT turnstile.credential_get(-1, 'hostile_new');
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) AS stored FROM turnstile.credential
 WHERE user_id IN (-1, 1) AND credential IS NOT NULL
   AND NOT credential LIKE 'tok-%';
DROP FUNCTION hostile.login(bigint);
CREATE FUNCTION hostile.login(bigint) RETURNS text
	LANGUAGE sql AS $$ SELECT 'tok-' || $1 || '-again' $$;
SELECT turnstile.credential_get(1, 'hostile_req');

--
-- 2. validate replaced by a function returning text: once a stale
-- credential was declared valid again.  Now 42P13, and not revalidated.
--
DROP FUNCTION hostile.validate(bigint, text);
CREATE FUNCTION hostile.validate(bigint, text) RETURNS text
	LANGUAGE sql AS $$ SELECT 'yes' $$;
UPDATE turnstile.credential SET validated_at = validated_at - interval '2 hours'
 WHERE user_id = 1;
SELECT turnstile.credential_get(1, 'hostile_req');
\echo :LAST_ERROR_SQLSTATE
SELECT realm, user_id, status, validations FROM turnstile.credential_status
 WHERE realm = 'hostile_req' AND user_id = 1;
DROP FUNCTION hostile.validate(bigint, text);
CREATE FUNCTION hostile.validate(bigint, text) RETURNS boolean
	LANGUAGE sql AS $$ SELECT true $$;
SELECT turnstile.credential_get(1, 'hostile_req');
SELECT realm, user_id, status, validations FROM turnstile.credential_status
 WHERE realm = 'hostile_req' AND user_id = 1;

--
-- 4. A caller inside a security-restricted operation (CREATE INDEX,
-- REFRESH MATERIALIZED VIEW) keeps it restricted through the realm's
-- login: a login that creates a temporary table fails with 42501, as the
-- same statement does without the extension in between.
--
CREATE FUNCTION hostile.temp_login(bigint) RETURNS text
	LANGUAGE plpgsql AS $$
BEGIN
	CREATE TEMP TABLE IF NOT EXISTS hostile_planted (x int);
	RETURN 'tok-temp-' || $1;
END $$;
CREATE FUNCTION hostile.temp_direct(bigint) RETURNS text
	LANGUAGE sql IMMUTABLE AS $$ SELECT hostile.temp_login($1) $$;
SELECT turnstile.realm_set('hostile_temp', 'hostile.temp_login(bigint)', NULL,
                           '1 hour', '0', '0', 'required');
SELECT turnstile.realm_set('hostile_temp_new', 'hostile.temp_login(bigint)', NULL,
                           '1 hour', '0', '0', 'requires_new');
CREATE FUNCTION hostile.cred_req(bigint) RETURNS text
	LANGUAGE sql IMMUTABLE AS $$ SELECT turnstile.credential_get($1, 'hostile_temp') $$;
CREATE FUNCTION hostile.cred_new(bigint) RETURNS text
	LANGUAGE sql IMMUTABLE AS $$ SELECT turnstile.credential_get($1, 'hostile_temp_new') $$;
CREATE TABLE hostile.t (id bigint);
INSERT INTO hostile.t VALUES (100), (101);
-- without the extension in between
CREATE INDEX ON hostile.t (hostile.temp_direct(id));
\echo :LAST_ERROR_SQLSTATE
-- through credential_get, both propagations
CREATE INDEX ON hostile.t (hostile.cred_req(id));
\echo :LAST_ERROR_SQLSTATE
CREATE INDEX ON hostile.t (hostile.cred_new(id));
\echo :LAST_ERROR_SQLSTATE
CREATE MATERIALIZED VIEW hostile.mv AS SELECT 1 AS id WITH NO DATA;
CREATE OR REPLACE FUNCTION hostile.mv_cred() RETURNS text
	LANGUAGE sql AS $$ SELECT turnstile.credential_get(102, 'hostile_temp') $$;
DROP MATERIALIZED VIEW hostile.mv;
CREATE MATERIALIZED VIEW hostile.mv AS SELECT hostile.mv_cred() AS c WITH NO DATA;
REFRESH MATERIALIZED VIEW hostile.mv;
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) AS planted FROM pg_class WHERE relname = 'hostile_planted';
-- outside a restricted operation the same login works
SELECT turnstile.credential_get(103, 'hostile_temp');
SELECT count(*) AS planted FROM pg_class WHERE relname = 'hostile_planted';
DISCARD TEMP;

--
-- 5. The extension's result types altered: once a crash when the view
-- read a row into a fixed array by the type's column count.  Now 55000
-- while the type has another shape, and right answers again once the
-- added column is dropped (a dropped column stays in the type).
--
ALTER TYPE turnstile.credential_state ADD ATTRIBUTE x text;
SELECT count(*) FROM turnstile.credential_status;
\echo :LAST_ERROR_SQLSTATE
ALTER TYPE turnstile.credential_state DROP ATTRIBUTE x;
SELECT realm, user_id, status FROM turnstile.credential_status
 WHERE realm = 'hostile_req' ORDER BY user_id;
SELECT turnstile.counter_create('hostile_c', 5);
ALTER TYPE turnstile.counter_state ADD ATTRIBUTE x text;
SELECT name, value FROM turnstile.counter_info('hostile_c');
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) FROM turnstile.counters;
\echo :LAST_ERROR_SQLSTATE
ALTER TYPE turnstile.counter_state DROP ATTRIBUTE x;
SELECT name, value FROM turnstile.counter_info('hostile_c');
SELECT name, value FROM turnstile.counters WHERE name = 'hostile_c';
-- rate_limit's type (1.5): an added column, and a column of another type,
-- which rate_limit would have filled with a bigint; nothing is counted
ALTER TYPE turnstile.rate_limit_result ADD ATTRIBUTE x text;
SELECT * FROM turnstile.rate_limit('hostile_rl', 5, '1000 days');
\echo :LAST_ERROR_SQLSTATE
ALTER TYPE turnstile.rate_limit_result DROP ATTRIBUTE x;
ALTER TYPE turnstile.rate_limit_result ALTER ATTRIBUTE count TYPE text;
SELECT * FROM turnstile.rate_limit('hostile_rl', 5, '1000 days', 2);
\echo :LAST_ERROR_SQLSTATE
ALTER TYPE turnstile.rate_limit_result ALTER ATTRIBUTE count TYPE bigint;
SELECT allowed, count, remaining FROM turnstile.rate_limit('hostile_rl', 5, '1000 days');

--
-- 6. A column of the extension's tables given another type: once
-- counter_get returned a pointer as the value and the stored value became
-- 0.  Now 55000 on every path, and the value is intact once it is back.
--
SELECT turnstile.counter_create('hostile_hot', 7, 4);
ALTER TABLE turnstile.counter_slot ALTER COLUMN value TYPE numeric;
SELECT turnstile.counter_get('hostile_c');
\echo :LAST_ERROR_SQLSTATE
SELECT turnstile.counter_incr('hostile_c');
\echo :LAST_ERROR_SQLSTATE
SELECT turnstile.counter_incr('hostile_hot');
\echo :LAST_ERROR_SQLSTATE
SELECT turnstile.counter_set('hostile_c', 1);
\echo :LAST_ERROR_SQLSTATE
SELECT turnstile.credential_get(1, 'hostile_req');
\echo :LAST_ERROR_SQLSTATE
ALTER TABLE turnstile.counter_slot ALTER COLUMN value TYPE bigint;
SELECT turnstile.counter_get('hostile_c'), turnstile.counter_get('hostile_hot');
ALTER TABLE turnstile.credential ALTER COLUMN user_id TYPE numeric;
SELECT turnstile.credential_get(1, 'hostile_req');
\echo :LAST_ERROR_SQLSTATE
ALTER TABLE turnstile.credential ALTER COLUMN user_id TYPE bigint;
-- an index replaced by one on other columns
ALTER TABLE turnstile.realm DROP CONSTRAINT realm_name_key;
CREATE UNIQUE INDEX realm_name_key ON turnstile.realm (realm_id);
SELECT turnstile.credential_get(1, 'hostile_req');
\echo :LAST_ERROR_SQLSTATE
DROP INDEX turnstile.realm_name_key;
ALTER TABLE turnstile.realm ADD CONSTRAINT realm_name_key UNIQUE (name);
SELECT turnstile.credential_get(1, 'hostile_req');
SELECT turnstile.counter_incr('hostile_c'), turnstile.counter_incr('hostile_hot');

--
-- 8. The role that registered a realm dropped: once every later login
-- failed with "invalid role OID".  Now a clear 42704 that says what to do.
--
CREATE ROLE regress_hostile_registrar;
GRANT USAGE ON SCHEMA turnstile, hostile TO regress_hostile_registrar;
GRANT EXECUTE ON FUNCTION turnstile.realm_set(text, regprocedure, regprocedure,
	interval, interval, interval, text) TO regress_hostile_registrar;
SET ROLE regress_hostile_registrar;
SELECT turnstile.realm_set('hostile_orphan', 'hostile.login(bigint)', NULL,
                           '1 hour', '0', '0', 'required');
RESET ROLE;
REVOKE ALL ON SCHEMA turnstile, hostile FROM regress_hostile_registrar;
REVOKE ALL ON FUNCTION turnstile.realm_set(text, regprocedure, regprocedure,
	interval, interval, interval, text) FROM regress_hostile_registrar;
DROP ROLE regress_hostile_registrar;
SELECT turnstile.credential_get(1, 'hostile_orphan');
\echo :LAST_ERROR_SQLSTATE
SELECT turnstile.realm_drop('hostile_orphan');

--
-- 11. A recorded failure whose SQLSTATE is not five characters (only a
-- direct write to the table can store one) is raised as 38000.
--
SELECT turnstile.realm_set('hostile_fail', 'hostile.login(bigint)', NULL,
                           '1 hour', '0', '1 hour', 'requires_new');
INSERT INTO turnstile.credential (realm_id, user_id, failures, last_error,
                                  last_sqlstate, failed_at)
SELECT realm_id, 1, 1, 'made up', 'X', now() FROM turnstile.realm
 WHERE name = 'hostile_fail';
\set VERBOSITY sqlstate
SELECT turnstile.credential_get(1, 'hostile_fail');
\set VERBOSITY terse

--
-- 12. An idempotency key's result that cannot be recorded (a trigger makes
-- the UPDATE that records it skip the row), or that was erased by hand:
-- once an internal error (XX000) after the increment.  Now 55000, and the
-- increment is rolled back with the error.  An expired key whose row a
-- trigger keeps from being deleted: once an endless loop (until
-- statement_timeout).  Now 55000.
--
CREATE FUNCTION hostile.skip_row() RETURNS trigger
	LANGUAGE plpgsql AS $$ BEGIN RETURN NULL; END $$;
CREATE TRIGGER skip_update BEFORE UPDATE ON turnstile.idempotency_key
	FOR EACH ROW EXECUTE FUNCTION hostile.skip_row();
SELECT turnstile.counter_get('hostile_c');
\set VERBOSITY default
SELECT turnstile.counter_incr_once('hostile_c', 5, 'hostile_k1');
\echo :LAST_ERROR_SQLSTATE
SELECT turnstile.counter_get('hostile_c'),
	   (SELECT count(*) FROM turnstile.idempotency_key WHERE key = 'hostile_k1') AS keys;
DROP TRIGGER skip_update ON turnstile.idempotency_key;
SELECT turnstile.counter_incr_once('hostile_c', 5, 'hostile_k2');
UPDATE turnstile.idempotency_key SET result = NULL WHERE key = 'hostile_k2';
SELECT turnstile.counter_incr_once('hostile_c', 5, 'hostile_k2');
\echo :LAST_ERROR_SQLSTATE
CREATE TRIGGER skip_delete BEFORE DELETE ON turnstile.idempotency_key
	FOR EACH ROW EXECUTE FUNCTION hostile.skip_row();
INSERT INTO turnstile.idempotency_key (key, counter, delta, result, used_at)
	VALUES ('hostile_k3', 'hostile_c', 5, 1, now() - interval '2 days');
SELECT turnstile.counter_incr_once('hostile_c', 5, 'hostile_k3');
\echo :LAST_ERROR_SQLSTATE
\set VERBOSITY terse
SELECT turnstile.counter_get('hostile_c');
DROP TRIGGER skip_delete ON turnstile.idempotency_key;
-- without the trigger the expired key is claimed anew
SELECT turnstile.counter_incr_once('hostile_c', 5, 'hostile_k3');
DELETE FROM turnstile.idempotency_key WHERE key IN ('hostile_k2', 'hostile_k3');

--
-- 13. A rate limit whose upsert a trigger makes skip the row: once a read
-- of a result row that was not there.  Now 55000, and nothing is counted.
--
SELECT allowed, count FROM turnstile.rate_limit('hostile_rl13', 5, '1000 days');
CREATE TRIGGER skip_rate BEFORE INSERT OR UPDATE ON turnstile.rate_limit
	FOR EACH ROW EXECUTE FUNCTION hostile.skip_row();
\set VERBOSITY default
SELECT * FROM turnstile.rate_limit('hostile_rl13', 5, '1000 days');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM turnstile.rate_limit('hostile_rl13_new', 5, '1000 days');
\echo :LAST_ERROR_SQLSTATE
\set VERBOSITY terse
DROP TRIGGER skip_rate ON turnstile.rate_limit;
SELECT key, count FROM turnstile.rate_limit WHERE key LIKE 'hostile_rl13%';
DELETE FROM turnstile.rate_limit WHERE key LIKE 'hostile_rl13%';

-- everything put back
SELECT turnstile.realm_drop(r) FROM unnest(ARRAY['hostile_req', 'hostile_new',
	'hostile_temp', 'hostile_temp_new', 'hostile_fail']) r;
SELECT turnstile.counter_drop('hostile_c'), turnstile.counter_drop('hostile_hot');
DROP SCHEMA hostile CASCADE;
