--
-- credential_security: who may register realms and get credentials, and as
-- whom a realm's login and validate run: always the role that registered
-- the realm, never the caller, and never with more rights than that role.
--
-- The roles are cluster-wide: drop any left behind by an interrupted run.
--
\set SHOW_CONTEXT never
SET client_min_messages = warning;
DROP SCHEMA IF EXISTS regress_cred_svc CASCADE;
DO $$
DECLARE
	r text;
BEGIN
	FOREACH r IN ARRAY ARRAY['regress_cred_owner', 'regress_cred_app',
	                         'regress_cred_nobody'] LOOP
		IF EXISTS (SELECT FROM pg_roles WHERE rolname = r) THEN
			EXECUTE format('DROP OWNED BY %I', r);
			EXECUTE format('DROP ROLE %I', r);
		END IF;
	END LOOP;
END $$;
RESET client_min_messages;

CREATE ROLE regress_cred_owner;
CREATE ROLE regress_cred_app;
CREATE ROLE regress_cred_nobody;

--
-- After CREATE EXTENSION, PUBLIC has no privilege on any realm or credential
-- function, table or view.
--
SELECT p.oid::regprocedure AS executable_by_public
  FROM pg_proc p
 WHERE p.pronamespace = 'turnstile'::regnamespace
   AND (p.proname LIKE 'realm%' OR p.proname LIKE 'credential%')
   AND has_function_privilege('public', p.oid, 'EXECUTE')
 ORDER BY 1;
SELECT c.oid::regclass AS accessible_to_public
  FROM pg_class c
 WHERE c.relnamespace = 'turnstile'::regnamespace
   AND c.relname IN ('realm', 'credential', 'credential_status')
   AND has_table_privilege('public', c.oid,
                           'SELECT, INSERT, UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER')
 ORDER BY 1;

--
-- The login service lives in its own schema.  Its functions record as whom
-- they run (current_user) and for whose session (session_user); only the
-- realm's owner may execute them and write the log.
--
CREATE SCHEMA regress_cred_svc;
CREATE TABLE regress_cred_svc.call (
	id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	kind text NOT NULL,
	user_id bigint NOT NULL,
	run_as name NOT NULL,
	session_of name NOT NULL);
CREATE FUNCTION regress_cred_svc.login(uid bigint) RETURNS text
LANGUAGE plpgsql AS $$
BEGIN
	INSERT INTO regress_cred_svc.call (kind, user_id, run_as, session_of)
		VALUES ('login', uid, current_user, session_user);
	RETURN current_user;
END $$;
CREATE FUNCTION regress_cred_svc.validate(uid bigint, credential text) RETURNS boolean
LANGUAGE plpgsql AS $$
BEGIN
	INSERT INTO regress_cred_svc.call (kind, user_id, run_as, session_of)
		VALUES ('validate', uid, current_user, session_user);
	RETURN credential = current_user;
END $$;
-- a login that tries to reach what its role may not
CREATE FUNCTION regress_cred_svc.prying_login(uid bigint) RETURNS text
LANGUAGE plpgsql AS $$
BEGIN
	CASE uid
	WHEN 1 THEN
		RETURN (SELECT string_agg(credential, ',') FROM turnstile.credential);
	WHEN 2 THEN
		RETURN (SELECT string_agg(name, ',') FROM turnstile.realm);
	WHEN 3 THEN
		UPDATE turnstile.credential SET credential = 'forged';
		RETURN 'forged';
	WHEN 4 THEN
		RESET ROLE;
		RETURN current_user;
	ELSE
		RETURN 'pry-' || uid;
	END CASE;
END $$;
-- the calls since the last look, then forget them
CREATE FUNCTION regress_cred_svc.calls(OUT kind text, OUT user_id bigint,
                                       OUT run_as name, OUT session_of name)
RETURNS SETOF record
LANGUAGE sql AS $$
	WITH gone AS (DELETE FROM regress_cred_svc.call RETURNING *)
	SELECT kind, user_id, run_as, session_of FROM gone ORDER BY id
$$;
REVOKE ALL ON FUNCTION regress_cred_svc.login(bigint),
                       regress_cred_svc.validate(bigint, text),
                       regress_cred_svc.prying_login(bigint),
                       regress_cred_svc.calls()
	FROM PUBLIC;
-- (everyone may look the functions up, only the owner may run them)
GRANT USAGE ON SCHEMA regress_cred_svc TO regress_cred_owner, regress_cred_app,
                                          regress_cred_nobody;
GRANT EXECUTE ON FUNCTION regress_cred_svc.login(bigint),
                          regress_cred_svc.validate(bigint, text),
                          regress_cred_svc.prying_login(bigint)
	TO regress_cred_owner;
GRANT INSERT ON regress_cred_svc.call TO regress_cred_owner;

--
-- A role without grants can use nothing (42501).
--
SET SESSION AUTHORIZATION regress_cred_nobody;
SELECT turnstile.realm_set('regress_cred_sec', 'regress_cred_svc.login(bigint)');
\echo :LAST_ERROR_SQLSTATE
SELECT turnstile.credential_get(1, 'regress_cred_sec');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM turnstile.credential_status;
\echo :LAST_ERROR_SQLSTATE
RESET SESSION AUTHORIZATION;

-- The grants: the realm's owner may register realms, the application may
-- use credentials and read their status.
GRANT USAGE ON SCHEMA turnstile TO regress_cred_owner, regress_cred_app;
GRANT EXECUTE ON FUNCTION
	turnstile.realm_set(text, regprocedure, regprocedure, interval, interval, interval, text),
	turnstile.realm_drop(text)
	TO regress_cred_owner;
GRANT EXECUTE ON FUNCTION
	turnstile.credential_get(bigint, text),
	turnstile.credential_set(bigint, text, text),
	turnstile.credential_invalidate(bigint, text, text),
	turnstile.credential_list()
	TO regress_cred_app;
GRANT SELECT ON turnstile.credential_status TO regress_cred_app;

--
-- Without EXECUTE on realm_set and realm_drop the application cannot
-- register or drop realms (42501).
--
SET SESSION AUTHORIZATION regress_cred_app;
SELECT turnstile.realm_set('regress_cred_sec', 'regress_cred_svc.login(bigint)');
\echo :LAST_ERROR_SQLSTATE
SELECT turnstile.realm_drop('regress_cred_sec');
\echo :LAST_ERROR_SQLSTATE
RESET SESSION AUTHORIZATION;
SELECT count(*) AS realms FROM turnstile.realm WHERE name LIKE 'regress_cred%';

--
-- The owner registers a realm; it is recorded as registered by the owner.
-- (propagation 'required': login runs in the caller's session and
-- transaction, so it can record the caller's session_user)
--
SET SESSION AUTHORIZATION regress_cred_owner;
SELECT turnstile.realm_set('regress_cred_sec', 'regress_cred_svc.login(bigint)',
                           'regress_cred_svc.validate(bigint,text)', ttl => '1 hour',
                           propagation => 'required');
RESET SESSION AUTHORIZATION;
SELECT name, login, validate, registered_by::regrole
  FROM turnstile.realm
 WHERE name = 'regress_cred_sec';
SELECT realm_id AS sec_id FROM turnstile.realm WHERE name = 'regress_cred_sec' \gset

--
-- A realm's credentials are for the roles it was granted to (realm_grant),
-- besides its registering role and the extension's owner: before the grant
-- the application can neither get them (42501) nor see their status.
--
SET SESSION AUTHORIZATION regress_cred_app;
SELECT turnstile.credential_get(1, 'regress_cred_sec');
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) FROM turnstile.credential_status WHERE realm = 'regress_cred_sec';
-- nor grant itself the realm
SELECT turnstile.realm_grant('regress_cred_sec', 'regress_cred_app');
\echo :LAST_ERROR_SQLSTATE
RESET SESSION AUTHORIZATION;
SELECT turnstile.realm_grant('regress_cred_sec', 'regress_cred_app');
SELECT turnstile.realm_grant('regress_cred_sec', 'regress_cred_app');	-- no-op
SELECT turnstile.realm_grant('regress_cred_none', 'regress_cred_app');
\echo :LAST_ERROR_SQLSTATE
SELECT turnstile.realm_grant('regress_cred_sec', NULL);
\echo :LAST_ERROR_SQLSTATE

--
-- The application gets a credential: login runs as the owner, in the
-- application's session, and the application is itself again afterwards.
--
SET SESSION AUTHORIZATION regress_cred_app;
SELECT current_user, session_user;
SELECT turnstile.credential_get(1, 'regress_cred_sec');
SELECT current_user, session_user;
SELECT user_id, status, logins, validations FROM turnstile.credential_status
 WHERE realm = 'regress_cred_sec';
-- (the service's log is not the application's to read)
SELECT count(*) FROM regress_cred_svc.call;
\echo :LAST_ERROR_SQLSTATE
RESET SESSION AUTHORIZATION;
SELECT kind, user_id, run_as, session_of FROM regress_cred_svc.calls();

-- validate runs as the owner too
UPDATE turnstile.credential SET validated_at = validated_at - interval '2 hours'
 WHERE realm_id = :sec_id AND user_id = 1;
SET SESSION AUTHORIZATION regress_cred_app;
SELECT turnstile.credential_get(1, 'regress_cred_sec');
SELECT user_id, status, logins, validations FROM turnstile.credential_status
 WHERE realm = 'regress_cred_sec';
RESET SESSION AUTHORIZATION;
SELECT kind, user_id, run_as, session_of FROM regress_cred_svc.calls();

-- whoever calls, even a superuser: the login runs as the owner
SELECT turnstile.credential_get(2, 'regress_cred_sec');
SELECT kind, user_id, run_as, session_of = session_user AS own_session
  FROM regress_cred_svc.calls();

-- With propagation 'requires_new' login and validate run in a background
-- worker's session, as the owner all the same.
SET SESSION AUTHORIZATION regress_cred_owner;
SELECT turnstile.realm_set('regress_cred_worker', 'regress_cred_svc.login(bigint)',
                           'regress_cred_svc.validate(bigint,text)', ttl => '1 hour',
                           propagation => 'requires_new');
RESET SESSION AUTHORIZATION;
SELECT turnstile.realm_grant('regress_cred_worker', 'regress_cred_app');
SET SESSION AUTHORIZATION regress_cred_app;
SELECT turnstile.credential_get(1, 'regress_cred_worker');
SELECT current_user, session_user;
RESET SESSION AUTHORIZATION;
UPDATE turnstile.credential SET validated_at = validated_at - interval '2 hours'
 WHERE realm_id = (SELECT realm_id FROM turnstile.realm WHERE name = 'regress_cred_worker');
SET SESSION AUTHORIZATION regress_cred_app;
SELECT turnstile.credential_get(1, 'regress_cred_worker');
SELECT user_id, status, logins, validations FROM turnstile.credential_status
 WHERE realm = 'regress_cred_worker';
RESET SESSION AUTHORIZATION;
SELECT kind, user_id, run_as FROM regress_cred_svc.calls();

--
-- The application reaches the credentials only through the functions: the
-- tables are out of reach, and the status view has no credential column.
--
SET SESSION AUTHORIZATION regress_cred_app;
SELECT credential FROM turnstile.credential;
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) FROM turnstile.credential;
\echo :LAST_ERROR_SQLSTATE
SELECT name FROM turnstile.realm;
\echo :LAST_ERROR_SQLSTATE
UPDATE turnstile.credential SET credential = 'forged';
\echo :LAST_ERROR_SQLSTATE
INSERT INTO turnstile.credential (realm_id, user_id, credential)
	VALUES (:sec_id, 3, 'forged');
\echo :LAST_ERROR_SQLSTATE
DELETE FROM turnstile.credential;
\echo :LAST_ERROR_SQLSTATE
UPDATE turnstile.realm SET registered_by = 'regress_cred_app'::regrole;
\echo :LAST_ERROR_SQLSTATE
TRUNCATE turnstile.realm;
\echo :LAST_ERROR_SQLSTATE
SELECT column_name
  FROM information_schema.columns
 WHERE table_schema = 'turnstile' AND table_name = 'credential_status'
 ORDER BY ordinal_position;
SELECT * FROM turnstile.credential_status WHERE credential IS NOT NULL;
\echo :LAST_ERROR_SQLSTATE
-- nor does the type of credential_list() carry one
SELECT count(*) AS credential_attributes
  FROM pg_attribute
 WHERE attrelid = 'turnstile.credential_state'::regclass
   AND attname = 'credential';
-- what the application was granted works
SELECT turnstile.credential_set(3, 'manual-3', 'regress_cred_sec');
SELECT turnstile.credential_get(3, 'regress_cred_sec');
SELECT turnstile.credential_invalidate(3, 'regress_cred_sec', 'manual-3');
SELECT user_id, status FROM turnstile.credential_status
 WHERE realm = 'regress_cred_sec' ORDER BY user_id;
SELECT current_user;
RESET SESSION AUTHORIZATION;

--
-- The owner loses EXECUTE on its login function: a fresh credential is
-- still returned, but a login fails with 42501 naming the realm and the
-- role, and stores nothing.
--
REVOKE EXECUTE ON FUNCTION regress_cred_svc.login(bigint) FROM regress_cred_owner;
SET SESSION AUTHORIZATION regress_cred_app;
SELECT turnstile.credential_get(1, 'regress_cred_sec');
SELECT turnstile.credential_get(3, 'regress_cred_sec');
\echo :LAST_ERROR_SQLSTATE
SELECT turnstile.credential_get(4, 'regress_cred_sec');
\echo :LAST_ERROR_SQLSTATE
SELECT user_id, status, logins FROM turnstile.credential_status
 WHERE realm = 'regress_cred_sec' ORDER BY user_id;
SELECT current_user;
RESET SESSION AUTHORIZATION;
-- a superuser caller does not lend its rights either
SELECT turnstile.credential_get(4, 'regress_cred_sec');
\echo :LAST_ERROR_SQLSTATE
-- the same for validate: an expired credential cannot be validated
REVOKE EXECUTE ON FUNCTION regress_cred_svc.validate(bigint, text) FROM regress_cred_owner;
UPDATE turnstile.credential SET validated_at = validated_at - interval '2 hours'
 WHERE realm_id = :sec_id AND user_id = 1;
SET SESSION AUTHORIZATION regress_cred_app;
SELECT turnstile.credential_get(1, 'regress_cred_sec');
\echo :LAST_ERROR_SQLSTATE
SELECT user_id, status, logins, validations FROM turnstile.credential_status
 WHERE realm = 'regress_cred_sec' AND user_id = 1;
RESET SESSION AUTHORIZATION;
SELECT kind, user_id, run_as, session_of FROM regress_cred_svc.calls();

-- realm_set rejects functions the registering role may not execute (42501)
-- and changes nothing.
SET SESSION AUTHORIZATION regress_cred_owner;
SELECT turnstile.realm_set('regress_cred_sec', 'regress_cred_svc.login(bigint)');
\echo :LAST_ERROR_SQLSTATE
SELECT turnstile.realm_set('regress_cred_new', 'regress_cred_svc.login(bigint)');
\echo :LAST_ERROR_SQLSTATE
SELECT turnstile.realm_set('regress_cred_new', 'regress_cred_svc.prying_login(bigint)',
                           'regress_cred_svc.validate(bigint,text)');
\echo :LAST_ERROR_SQLSTATE
RESET SESSION AUTHORIZATION;
SELECT name, login, validate, ttl, registered_by::regrole
  FROM turnstile.realm
 WHERE name LIKE 'regress_cred%'
 ORDER BY name;
-- with EXECUTE given back, the realm works again
GRANT EXECUTE ON FUNCTION regress_cred_svc.login(bigint),
                          regress_cred_svc.validate(bigint, text)
	TO regress_cred_owner;
SET SESSION AUTHORIZATION regress_cred_app;
SELECT turnstile.credential_get(4, 'regress_cred_sec');
RESET SESSION AUTHORIZATION;

--
-- A login runs with its role's rights only: not with those of the
-- extension's owner, whose tables credential_get reads and writes around
-- the call, and it cannot change its identity.
--
SET SESSION AUTHORIZATION regress_cred_owner;
SELECT turnstile.realm_set('regress_cred_pry', 'regress_cred_svc.prying_login(bigint)',
                           propagation => 'required');
SELECT turnstile.realm_set('regress_cred_pry_worker', 'regress_cred_svc.prying_login(bigint)',
                           propagation => 'requires_new');
RESET SESSION AUTHORIZATION;
SELECT turnstile.realm_grant('regress_cred_pry', 'regress_cred_app'),
       turnstile.realm_grant('regress_cred_pry_worker', 'regress_cred_app');
SET SESSION AUTHORIZATION regress_cred_app;
SELECT turnstile.credential_get(1, 'regress_cred_pry');
\echo :LAST_ERROR_SQLSTATE
SELECT turnstile.credential_get(2, 'regress_cred_pry');
\echo :LAST_ERROR_SQLSTATE
SELECT turnstile.credential_get(3, 'regress_cred_pry');
\echo :LAST_ERROR_SQLSTATE
SELECT turnstile.credential_get(4, 'regress_cred_pry');
\echo :LAST_ERROR_SQLSTATE
SELECT turnstile.credential_get(5, 'regress_cred_pry');
-- the same in a background worker's session
SELECT turnstile.credential_get(1, 'regress_cred_pry_worker');
\echo :LAST_ERROR_SQLSTATE
SELECT turnstile.credential_get(2, 'regress_cred_pry_worker');
\echo :LAST_ERROR_SQLSTATE
SELECT turnstile.credential_get(3, 'regress_cred_pry_worker');
\echo :LAST_ERROR_SQLSTATE
SELECT turnstile.credential_get(4, 'regress_cred_pry_worker');
\echo :LAST_ERROR_SQLSTATE
SELECT turnstile.credential_get(5, 'regress_cred_pry_worker');
SELECT current_user;
RESET SESSION AUTHORIZATION;
SELECT realm, user_id, status, failures FROM turnstile.credential_status
 WHERE realm LIKE 'regress_cred_pry%' ORDER BY realm, user_id;
-- nothing was forged
SELECT count(*) AS forged FROM turnstile.credential WHERE credential = 'forged';

--
-- Once its EXECUTE on realm_set is revoked, the owner cannot register
-- realms any more (42501); its realms keep working.
--
REVOKE EXECUTE ON FUNCTION
	turnstile.realm_set(text, regprocedure, regprocedure, interval, interval, interval, text)
	FROM regress_cred_owner;
SET SESSION AUTHORIZATION regress_cred_owner;
SELECT turnstile.realm_set('regress_cred_sec', 'regress_cred_svc.login(bigint)');
\echo :LAST_ERROR_SQLSTATE
RESET SESSION AUTHORIZATION;
SET SESSION AUTHORIZATION regress_cred_app;
SELECT turnstile.credential_get(5, 'regress_cred_sec');
RESET SESSION AUTHORIZATION;

--
-- A caller cannot put its own objects in the path of the realm's functions.
-- They run with the search_path their role had at realm_set, with pg_temp
-- last, so a caller's search_path or temporary table (with a trigger that
-- would run with the registering role's rights) is never reached.
--
CREATE TABLE regress_cred_svc.journal (user_id bigint, search_path text);
CREATE FUNCTION regress_cred_svc.unqualified_login(uid bigint) RETURNS text
LANGUAGE plpgsql AS $$
BEGIN
	INSERT INTO journal VALUES (uid, current_setting('search_path'));	-- unqualified
	RETURN 'tok-' || uid;
END $$;
REVOKE ALL ON FUNCTION regress_cred_svc.unqualified_login(bigint) FROM PUBLIC;
-- registered by the superuser: the worst case, were a planted trigger reached
SET search_path = regress_cred_svc, public;
SELECT turnstile.realm_set('regress_cred_path', 'unqualified_login(bigint)',
                           propagation => 'required');
SELECT turnstile.realm_set('regress_cred_path_worker', 'unqualified_login(bigint)',
                           propagation => 'requires_new');
-- a role whose search_path names pg_temp first: it still goes last
SET search_path = pg_temp, regress_cred_svc, "$user", public;
SELECT turnstile.realm_set('regress_cred_path_temp_first', 'unqualified_login(bigint)',
                           propagation => 'required');
RESET search_path;
SELECT name, search_path FROM turnstile.realm WHERE name LIKE 'regress_cred_path%' ORDER BY name;

GRANT EXECUTE ON FUNCTION turnstile.credential_get(bigint, text) TO regress_cred_app;
SELECT turnstile.realm_grant('regress_cred_path', 'regress_cred_app'),
       turnstile.realm_grant('regress_cred_path_worker', 'regress_cred_app'),
       turnstile.realm_grant('regress_cred_path_temp_first', 'regress_cred_app');
SET SESSION AUTHORIZATION regress_cred_app;
CREATE TEMP TABLE journal (user_id bigint, search_path text);
CREATE TEMP TABLE evidence (ran_as name);
CREATE FUNCTION pg_temp.plant() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	INSERT INTO pg_temp.evidence VALUES (current_user);
	RETURN NEW;
END $$;
CREATE TRIGGER plant BEFORE INSERT ON pg_temp.journal
	FOR EACH ROW EXECUTE FUNCTION pg_temp.plant();
SET search_path = pg_temp, public;
SELECT turnstile.credential_get(1, 'regress_cred_path');
SELECT turnstile.credential_get(1, 'regress_cred_path_worker');
SELECT turnstile.credential_get(1, 'regress_cred_path_temp_first');
SELECT count(*) AS planted_trigger_ran FROM pg_temp.evidence;
SELECT count(*) AS rows_in_caller_table FROM pg_temp.journal;
RESET search_path;
RESET SESSION AUTHORIZATION;
SELECT user_id, search_path FROM regress_cred_svc.journal;

--
-- Taking a realm back: after realm_revoke the application is refused again,
-- and a role granted nothing sees no credential's status at all.
--
SELECT turnstile.realm_revoke('regress_cred_sec', 'regress_cred_app');
SELECT turnstile.realm_revoke('regress_cred_sec', 'regress_cred_app');
SET SESSION AUTHORIZATION regress_cred_app;
SELECT turnstile.credential_get(1, 'regress_cred_sec');
\echo :LAST_ERROR_SQLSTATE
SELECT realm, count(*) FROM turnstile.credential_status GROUP BY realm ORDER BY realm;
RESET SESSION AUTHORIZATION;
GRANT USAGE ON SCHEMA turnstile TO regress_cred_nobody;
GRANT EXECUTE ON FUNCTION turnstile.credential_list() TO regress_cred_nobody;
GRANT SELECT ON turnstile.credential_status TO regress_cred_nobody;
SET SESSION AUTHORIZATION regress_cred_nobody;
SELECT count(*) FROM turnstile.credential_status;
RESET SESSION AUTHORIZATION;

--
-- Clean up: the realms, the service, and the roles' grants (DROP OWNED).
--
SELECT r, turnstile.realm_drop(r)
  FROM unnest(ARRAY['regress_cred_sec', 'regress_cred_worker', 'regress_cred_pry',
                    'regress_cred_pry_worker', 'regress_cred_path',
                    'regress_cred_path_worker', 'regress_cred_path_temp_first']) AS r;
SELECT count(*) AS credentials_left FROM turnstile.credential_status
 WHERE realm LIKE 'regress_cred%';
SET client_min_messages = warning;
DROP SCHEMA regress_cred_svc CASCADE;
RESET client_min_messages;
DROP OWNED BY regress_cred_owner, regress_cred_app, regress_cred_nobody;
DROP ROLE regress_cred_owner;
DROP ROLE regress_cred_app;
DROP ROLE regress_cred_nobody;
-- nothing in the schema is left granted to anyone but its owner
SELECT count(*) AS foreign_grants
  FROM pg_proc p, aclexplode(p.proacl) a
 WHERE p.pronamespace = 'turnstile'::regnamespace
   AND a.grantee <> p.proowner;
SELECT count(*) AS foreign_grants
  FROM pg_class c, aclexplode(c.relacl) a
 WHERE c.relnamespace = 'turnstile'::regnamespace
   AND a.grantee <> c.relowner;
SELECT count(*) AS foreign_grants
  FROM pg_namespace n, aclexplode(n.nspacl) a
 WHERE n.nspname = 'turnstile'
   AND a.grantee <> n.nspowner;
