--
-- credential_errors: every error a realm or credential call can raise, with
-- its SQLSTATE (echoed after each failing statement), and proof that the
-- failed call stored nothing.
--
\set SHOW_CONTEXT never
-- a hang (say, an endless recursion waiting on itself) fails the test
-- instead of blocking it
SET statement_timeout = '30s';

--
-- A login service whose login misbehaves for some users:
--   1 raises with its own SQLSTATE, DETAIL and HINT
--   2 returns NULL
--   3 returns an empty string
--   4 asks for the credential of the very user it is logging in
--   5 asks for the credential of another user first (which is fine)
--   any other user gets 'ok-<user>-<n>'
-- and whose validate says yes, except for:
--   20 NULL (counts as no)
--   21 raises
--   22 asks for the credential it is validating
--
CREATE TABLE cred_err_call (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                            kind text NOT NULL, user_id bigint NOT NULL);
CREATE SEQUENCE cred_err_seq;
CREATE FUNCTION cred_err_login(uid bigint) RETURNS text
LANGUAGE plpgsql AS $$
BEGIN
	INSERT INTO cred_err_call (kind, user_id) VALUES ('login', uid);
	CASE uid
	WHEN 1 THEN
		RAISE EXCEPTION 'account % is locked', uid
			USING ERRCODE = 'invalid_authorization_specification',
			      DETAIL = 'Too many failed attempts.',
			      HINT = 'Unlock it in the admin console.';
	WHEN 2 THEN
		RETURN NULL;
	WHEN 3 THEN
		RETURN '';
	WHEN 4 THEN
		RETURN turnstile.credential_get(uid, 'cred_err');
	WHEN 5 THEN
		RETURN 'ok-5-with-' || turnstile.credential_get(6, 'cred_err');
	ELSE
		RETURN 'ok-' || uid || '-' || nextval('cred_err_seq');
	END CASE;
END $$;
CREATE FUNCTION cred_err_validate(uid bigint, credential text) RETURNS boolean
LANGUAGE plpgsql AS $$
BEGIN
	INSERT INTO cred_err_call (kind, user_id) VALUES ('validate', uid);
	CASE uid
	WHEN 20 THEN
		RETURN NULL;
	WHEN 21 THEN
		RAISE EXCEPTION 'validation service unavailable'
			USING ERRCODE = 'connection_failure';
	WHEN 22 THEN
		RETURN turnstile.credential_get(uid, 'cred_err') IS NOT NULL;
	ELSE
		RETURN true;
	END CASE;
END $$;
-- the calls since the last look, then forget them
CREATE FUNCTION cred_err_calls(OUT kind text, OUT user_id bigint)
RETURNS SETOF record
LANGUAGE sql AS $$
	WITH gone AS (DELETE FROM cred_err_call RETURNING *)
	SELECT kind, user_id FROM gone ORDER BY id
$$;
-- functions that do not fit a realm
CREATE FUNCTION cred_err_login_int(uid integer) RETURNS text
	LANGUAGE sql AS $$ SELECT 'x' $$;
CREATE FUNCTION cred_err_login_varchar(uid bigint) RETURNS varchar
	LANGUAGE sql AS $$ SELECT 'x'::varchar $$;
CREATE FUNCTION cred_err_login_two(uid bigint, extra text) RETURNS text
	LANGUAGE sql AS $$ SELECT 'x' $$;
CREATE FUNCTION cred_err_login_set(uid bigint) RETURNS SETOF text
	LANGUAGE sql AS $$ SELECT 'x' $$;
CREATE FUNCTION cred_err_none() RETURNS text
	LANGUAGE sql AS $$ SELECT 'x' $$;
CREATE PROCEDURE cred_err_login_proc(uid bigint)
	LANGUAGE sql AS $$ SELECT 1 $$;
CREATE AGGREGATE cred_err_login_agg(bigint) (SFUNC = int8pl, STYPE = bigint);
CREATE FUNCTION cred_err_validate_one(uid bigint) RETURNS boolean
	LANGUAGE sql AS $$ SELECT true $$;
CREATE FUNCTION cred_err_validate_text(uid bigint, credential text) RETURNS text
	LANGUAGE sql AS $$ SELECT 'yes' $$;
CREATE FUNCTION cred_err_validate_int(uid bigint, credential integer) RETURNS boolean
	LANGUAGE sql AS $$ SELECT true $$;

-- (propagation 'required': the refresh runs in the caller's transaction,
-- and a failure records nothing; credential_propagation tests how
-- 'requires_new' records failures and holds off retries)
SELECT turnstile.realm_set('cred_err', 'cred_err_login(bigint)',
                           'cred_err_validate(bigint,text)', ttl => '1 hour',
                           propagation => 'required');
SELECT realm_id AS err_id FROM turnstile.realm WHERE name = 'cred_err' \gset
SELECT turnstile.credential_get(9, 'cred_err');
SELECT kind, user_id FROM cred_err_calls();
-- what every failed call below must leave as it is
CREATE TABLE cred_err_before AS
	SELECT r.*, md5(r::text) AS realm_hash,
	       (SELECT md5(string_agg(c::text, ',' ORDER BY c.realm_id, c.user_id))
	          FROM turnstile.credential c) AS credentials_hash
	  FROM turnstile.realm r;
CREATE FUNCTION cred_err_unchanged(OUT realms_unchanged boolean,
                                   OUT credentials_unchanged boolean)
LANGUAGE sql AS $$
	SELECT (SELECT count(*) FROM turnstile.realm)
	           = (SELECT count(*) FROM cred_err_before)
	       AND NOT EXISTS (SELECT FROM turnstile.realm r
	                        WHERE md5(r::text) NOT IN (SELECT realm_hash FROM cred_err_before)),
	       (SELECT md5(string_agg(c::text, ',' ORDER BY c.realm_id, c.user_id))
	          FROM turnstile.credential c)
	           IS NOT DISTINCT FROM (SELECT credentials_hash FROM cred_err_before LIMIT 1)
$$;
SELECT * FROM cred_err_unchanged();

--
-- NULL arguments raise 22004 and name the argument.  (validate and the
-- credential to invalidate may be NULL: no validate, any credential.)
--
SELECT turnstile.realm_set(NULL, 'cred_err_login(bigint)');
\echo :LAST_ERROR_SQLSTATE
SELECT turnstile.realm_set('cred_err_new', NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT turnstile.realm_set('cred_err_new', 'cred_err_login(bigint)', ttl => NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT turnstile.realm_set('cred_err_new', 'cred_err_login(bigint)', refresh_ahead => NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT turnstile.realm_set('cred_err_new', 'cred_err_login(bigint)', retry_after => NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT turnstile.realm_set('cred_err_new', 'cred_err_login(bigint)', propagation => NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT turnstile.realm_set('cred_err', NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT turnstile.realm_drop(NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT turnstile.credential_get(NULL, 'cred_err');
\echo :LAST_ERROR_SQLSTATE
SELECT turnstile.credential_get(NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT turnstile.credential_get(1, NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT turnstile.credential_set(NULL, 'x', 'cred_err');
\echo :LAST_ERROR_SQLSTATE
SELECT turnstile.credential_set(9, NULL, 'cred_err');
\echo :LAST_ERROR_SQLSTATE
SELECT turnstile.credential_set(9, 'x', NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT turnstile.credential_invalidate(NULL, 'cred_err');
\echo :LAST_ERROR_SQLSTATE
SELECT turnstile.credential_invalidate(9, NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT turnstile.credential_invalidate(NULL, 'cred_err', 'x');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM cred_err_unchanged();
SELECT count(*) AS no_realm_added FROM turnstile.realm WHERE name = 'cred_err_new';

--
-- Realm names must have 1 to 200 characters (characters, not bytes): 22023.
--
SELECT turnstile.realm_set('', 'cred_err_login(bigint)');
\echo :LAST_ERROR_SQLSTATE
SELECT turnstile.realm_set(repeat('x', 201), 'cred_err_login(bigint)');
\echo :LAST_ERROR_SQLSTATE
SELECT turnstile.realm_set(repeat('é', 201), 'cred_err_login(bigint)');
\echo :LAST_ERROR_SQLSTATE
SELECT turnstile.realm_drop('');
\echo :LAST_ERROR_SQLSTATE
SELECT turnstile.realm_drop(repeat('x', 201));
\echo :LAST_ERROR_SQLSTATE
SELECT turnstile.credential_get(9, '');
\echo :LAST_ERROR_SQLSTATE
SELECT turnstile.credential_get(9, repeat('€', 201));
\echo :LAST_ERROR_SQLSTATE
SELECT turnstile.credential_set(9, 'x', '');
\echo :LAST_ERROR_SQLSTATE
SELECT turnstile.credential_set(9, 'x', repeat('x', 201));
\echo :LAST_ERROR_SQLSTATE
SELECT turnstile.credential_invalidate(9, '');
\echo :LAST_ERROR_SQLSTATE
SELECT turnstile.credential_invalidate(9, repeat('x', 201), 'x');
\echo :LAST_ERROR_SQLSTATE
-- an empty credential cannot be stored either
SELECT turnstile.credential_set(9, '', 'cred_err');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM cred_err_unchanged();

--
-- An unknown realm is 42704, naming it; realm_drop just says false.
--
SELECT turnstile.credential_get(9, 'cred_err_nope');
\echo :LAST_ERROR_SQLSTATE
SELECT turnstile.credential_get(9);
\echo :LAST_ERROR_SQLSTATE
SELECT turnstile.credential_set(9, 'x', 'cred_err_nope');
\echo :LAST_ERROR_SQLSTATE
SELECT turnstile.credential_invalidate(9, 'cred_err_nope');
\echo :LAST_ERROR_SQLSTATE
-- names are exact: no case folding, no trimming
SELECT turnstile.credential_get(9, 'CRED_ERR');
\echo :LAST_ERROR_SQLSTATE
SELECT turnstile.credential_get(9, 'cred_err ');
\echo :LAST_ERROR_SQLSTATE
SELECT turnstile.realm_drop('cred_err_nope');
SELECT * FROM cred_err_unchanged();

--
-- realm_set checks its settings (22023) and changes nothing when one is
-- wrong, whether the realm is new or exists.
--
SELECT turnstile.realm_set('cred_err_new', 'cred_err_login(bigint)', ttl => '0');
\echo :LAST_ERROR_SQLSTATE
SELECT turnstile.realm_set('cred_err_new', 'cred_err_login(bigint)', ttl => '-1 hour');
\echo :LAST_ERROR_SQLSTATE
-- (a day counts as 24 hours)
SELECT turnstile.realm_set('cred_err_new', 'cred_err_login(bigint)', ttl => '1 day -24 hours');
\echo :LAST_ERROR_SQLSTATE
SELECT turnstile.realm_set('cred_err_new', 'cred_err_login(bigint)',
                           refresh_ahead => '-1 second');
\echo :LAST_ERROR_SQLSTATE
SELECT turnstile.realm_set('cred_err_new', 'cred_err_login(bigint)',
                           ttl => '1 hour', refresh_ahead => '1 hour');
\echo :LAST_ERROR_SQLSTATE
SELECT turnstile.realm_set('cred_err_new', 'cred_err_login(bigint)',
                           ttl => '1 hour', refresh_ahead => '2 hours');
\echo :LAST_ERROR_SQLSTATE
-- the default ttl is 30 minutes
SELECT turnstile.realm_set('cred_err_new', 'cred_err_login(bigint)',
                           refresh_ahead => '30 minutes');
\echo :LAST_ERROR_SQLSTATE
SELECT turnstile.realm_set('cred_err_new', 'cred_err_login(bigint)',
                           retry_after => '-1 second');
\echo :LAST_ERROR_SQLSTATE
SELECT turnstile.realm_set('cred_err_new', 'cred_err_login(bigint)', propagation => 'bogus');
\echo :LAST_ERROR_SQLSTATE
SELECT turnstile.realm_set('cred_err_new', 'cred_err_login(bigint)', propagation => 'REQUIRED');
\echo :LAST_ERROR_SQLSTATE
SELECT turnstile.realm_set('cred_err_new', 'cred_err_login(bigint)', propagation => '');
\echo :LAST_ERROR_SQLSTATE
-- the same on the existing realm
SELECT turnstile.realm_set('cred_err', 'cred_err_login(bigint)', ttl => '0');
\echo :LAST_ERROR_SQLSTATE
SELECT turnstile.realm_set('cred_err', 'cred_err_login(bigint)', ttl => '1 hour',
                           refresh_ahead => '1 hour');
\echo :LAST_ERROR_SQLSTATE
SELECT turnstile.realm_set('cred_err', 'cred_err_login(bigint)', retry_after => '-1 hour');
\echo :LAST_ERROR_SQLSTATE
SELECT turnstile.realm_set('cred_err', 'cred_err_login(bigint)', propagation => 'never');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM cred_err_unchanged();
-- the limits themselves are accepted, and both propagations (checked in a
-- transaction rolled back)
BEGIN;
SELECT turnstile.realm_set('cred_err_new', 'cred_err_login(bigint)',
                           ttl => '1 microsecond', refresh_ahead => '0',
                           retry_after => '0', propagation => 'requires_new');
SELECT name, ttl, refresh_ahead, retry_after, propagation FROM turnstile.realm
 WHERE name = 'cred_err_new';
SELECT turnstile.realm_set('cred_err_new', 'cred_err_login(bigint)',
                           ttl => '1 hour', refresh_ahead => '59 minutes 59.999999 seconds',
                           propagation => 'required');
SELECT name, ttl, refresh_ahead, retry_after, propagation FROM turnstile.realm
 WHERE name = 'cred_err_new';
ROLLBACK;

--
-- realm_set checks the signatures of login (bigint) -> text and validate
-- (bigint, text) -> boolean: 22023 naming the function.
--
SELECT turnstile.realm_set('cred_err_new', 'cred_err_login_int(integer)');
\echo :LAST_ERROR_SQLSTATE
SELECT turnstile.realm_set('cred_err_new', 'cred_err_login_varchar(bigint)');
\echo :LAST_ERROR_SQLSTATE
SELECT turnstile.realm_set('cred_err_new', 'cred_err_login_two(bigint,text)');
\echo :LAST_ERROR_SQLSTATE
SELECT turnstile.realm_set('cred_err_new', 'cred_err_login_set(bigint)');
\echo :LAST_ERROR_SQLSTATE
SELECT turnstile.realm_set('cred_err_new', 'cred_err_none()');
\echo :LAST_ERROR_SQLSTATE
SELECT turnstile.realm_set('cred_err_new', 'cred_err_login_proc(bigint)');
\echo :LAST_ERROR_SQLSTATE
SELECT turnstile.realm_set('cred_err_new', 'cred_err_login_agg(bigint)');
\echo :LAST_ERROR_SQLSTATE
-- a validate function given as login, and the other way round
SELECT turnstile.realm_set('cred_err_new', 'cred_err_validate(bigint,text)');
\echo :LAST_ERROR_SQLSTATE
SELECT turnstile.realm_set('cred_err_new', 'cred_err_login(bigint)', 'cred_err_login(bigint)');
\echo :LAST_ERROR_SQLSTATE
SELECT turnstile.realm_set('cred_err_new', 'cred_err_login(bigint)',
                           'cred_err_validate_one(bigint)');
\echo :LAST_ERROR_SQLSTATE
SELECT turnstile.realm_set('cred_err_new', 'cred_err_login(bigint)',
                           'cred_err_validate_text(bigint,text)');
\echo :LAST_ERROR_SQLSTATE
SELECT turnstile.realm_set('cred_err_new', 'cred_err_login(bigint)',
                           'cred_err_validate_int(bigint,integer)');
\echo :LAST_ERROR_SQLSTATE
-- and on the existing realm
SELECT turnstile.realm_set('cred_err', 'cred_err_login_varchar(bigint)');
\echo :LAST_ERROR_SQLSTATE
SELECT turnstile.realm_set('cred_err', 'cred_err_login(bigint)',
                           'cred_err_validate_text(bigint,text)');
\echo :LAST_ERROR_SQLSTATE
-- a function that does not exist is caught by the regprocedure input ...
SELECT turnstile.realm_set('cred_err_new', 'cred_err_no_such_login(bigint)');
\echo :LAST_ERROR_SQLSTATE
-- ... and the OID 0 ('-') as login by realm_set: 42883
SELECT turnstile.realm_set('cred_err_new', '-');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM cred_err_unchanged();
SELECT count(*) AS no_realm_added FROM turnstile.realm WHERE name = 'cred_err_new';

--
-- A login that raises: its SQLSTATE, DETAIL and HINT reach the caller, the
-- message names the user and the realm, and nothing is stored.
--
SELECT turnstile.credential_get(1, 'cred_err');
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) AS stored FROM turnstile.credential_status
 WHERE realm = 'cred_err' AND user_id = 1;
-- the error context names the login function, the realm and the user
\set SHOW_CONTEXT errors
SELECT turnstile.credential_get(1, 'cred_err');
\echo :LAST_ERROR_SQLSTATE
\set SHOW_CONTEXT never
-- so does a PL/pgSQL caller see it, and can catch it by its SQLSTATE
DO $$
BEGIN
	PERFORM turnstile.credential_get(1, 'cred_err');
EXCEPTION WHEN invalid_authorization_specification THEN
	RAISE NOTICE 'caught %: %', SQLSTATE, SQLERRM;
END $$;
-- inside a transaction the error aborts it; a savepoint lets it go on
BEGIN;
SELECT turnstile.credential_get(9, 'cred_err');
SAVEPOINT s;
SELECT turnstile.credential_get(1, 'cred_err');
\echo :LAST_ERROR_SQLSTATE
ROLLBACK TO SAVEPOINT s;
SELECT turnstile.credential_get(9, 'cred_err');
SELECT user_id, status FROM turnstile.credential_status
 WHERE realm = 'cred_err' ORDER BY user_id;
COMMIT;
SELECT kind, user_id FROM cred_err_calls();

-- A login that returns NULL or an empty string: 39004, nothing stored.
SELECT turnstile.credential_get(2, 'cred_err');
\echo :LAST_ERROR_SQLSTATE
SELECT turnstile.credential_get(3, 'cred_err');
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) AS stored FROM turnstile.credential_status
 WHERE realm = 'cred_err' AND user_id IN (1, 2, 3);

-- A failing login leaves an existing credential as it was: invalidated
-- (here: stored with credential_set, then invalidated), same counts.
SELECT turnstile.credential_set(u, 'manual-' || u, 'cred_err') FROM generate_series(1, 3) u;
SELECT turnstile.credential_invalidate(u, 'cred_err') FROM generate_series(1, 3) u;
SELECT md5(string_agg(c::text, ',' ORDER BY c.user_id)) AS failing_rows
  FROM turnstile.credential c
 WHERE c.realm_id = :err_id AND c.user_id IN (1, 2, 3) \gset
SELECT turnstile.credential_get(1, 'cred_err');
\echo :LAST_ERROR_SQLSTATE
SELECT turnstile.credential_get(2, 'cred_err');
\echo :LAST_ERROR_SQLSTATE
SELECT turnstile.credential_get(3, 'cred_err');
\echo :LAST_ERROR_SQLSTATE
SELECT md5(string_agg(c::text, ',' ORDER BY c.user_id)) = :'failing_rows' AS unchanged
  FROM turnstile.credential c
 WHERE c.realm_id = :err_id AND c.user_id IN (1, 2, 3);
SELECT user_id, status, logins, validations, failures, last_error
  FROM turnstile.credential_status
 WHERE realm = 'cred_err' AND user_id IN (1, 2, 3)
 ORDER BY user_id;
-- expired instead of invalidated: validate says yes, so no login is tried
UPDATE turnstile.credential SET invalidated = false,
       validated_at = validated_at - interval '2 hours'
 WHERE realm_id = :err_id AND user_id IN (1, 2, 3);
SELECT turnstile.credential_get(u, 'cred_err') FROM generate_series(1, 3) u;
SELECT kind, user_id FROM cred_err_calls();

--
-- A login that asks for the credential it is logging in: 42P19 at once,
-- not an endless recursion or a wait on its own lock; nothing stored.
--
SELECT turnstile.credential_get(4, 'cred_err');
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) AS stored FROM turnstile.credential_status
 WHERE realm = 'cred_err' AND user_id = 4;
SELECT kind, user_id FROM cred_err_calls();
-- asking for another user's credential is fine: both are stored
SELECT turnstile.credential_get(5, 'cred_err');
SELECT user_id, status, logins FROM turnstile.credential_status
 WHERE realm = 'cred_err' AND user_id IN (5, 6) ORDER BY user_id;
SELECT kind, user_id FROM cred_err_calls();

--
-- validate: NULL counts as "no" (a new login follows), an error is reported
-- like a login's (nothing changes), and asking for the credential being
-- validated is 42P19.
--
SELECT turnstile.credential_get(u, 'cred_err') FROM unnest(ARRAY[20, 21, 22]) u;
UPDATE turnstile.credential SET validated_at = validated_at - interval '2 hours'
 WHERE realm_id = :err_id AND user_id IN (20, 21, 22);
SELECT kind, user_id FROM cred_err_calls();
SELECT md5(string_agg(c::text, ',' ORDER BY c.user_id)) AS failing_rows
  FROM turnstile.credential c
 WHERE c.realm_id = :err_id AND c.user_id IN (21, 22) \gset
SELECT turnstile.credential_get(20, 'cred_err');
SELECT kind, user_id FROM cred_err_calls();
SELECT turnstile.credential_get(21, 'cred_err');
\echo :LAST_ERROR_SQLSTATE
SELECT turnstile.credential_get(22, 'cred_err');
\echo :LAST_ERROR_SQLSTATE
SELECT md5(string_agg(c::text, ',' ORDER BY c.user_id)) = :'failing_rows' AS unchanged
  FROM turnstile.credential c
 WHERE c.realm_id = :err_id AND c.user_id IN (21, 22);
SELECT user_id, status, logins, validations FROM turnstile.credential_status
 WHERE realm = 'cred_err' AND user_id IN (20, 21, 22) ORDER BY user_id;

--
-- A realm whose login function was dropped: 42883 naming the realm when a
-- login is needed; a fresh credential is still returned.
--
CREATE FUNCTION cred_err_doomed(uid bigint) RETURNS text
	LANGUAGE sql AS $$ SELECT 'doomed-' || uid $$;
SELECT turnstile.realm_set('cred_err_doomed', 'cred_err_doomed(bigint)',
                           propagation => 'required');
SELECT turnstile.credential_get(1, 'cred_err_doomed');
DROP FUNCTION cred_err_doomed(bigint);
SELECT turnstile.credential_get(1, 'cred_err_doomed');
SELECT turnstile.credential_get(2, 'cred_err_doomed');
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) AS stored FROM turnstile.credential_status
 WHERE realm = 'cred_err_doomed' AND user_id = 2;
SELECT turnstile.realm_drop('cred_err_doomed');

--
-- A read-only transaction cannot change anything (25006), but still gets a
-- valid credential: a fresh one, and one due for a refresh as it is.
--
SELECT turnstile.realm_set('cred_err_ahead', 'cred_err_login(bigint)',
                           ttl => '1 hour', refresh_ahead => '10 minutes',
                           propagation => 'required');
SELECT turnstile.credential_get(30, 'cred_err_ahead') AS c30 \gset
UPDATE turnstile.credential SET validated_at = validated_at - interval '55 minutes'
 WHERE realm_id = (SELECT realm_id FROM turnstile.realm WHERE name = 'cred_err_ahead');
SELECT turnstile.credential_get(31, 'cred_err_ahead') AS c31 \gset
SELECT kind, user_id FROM cred_err_calls();
BEGIN READ ONLY;
SELECT turnstile.credential_get(30, 'cred_err_ahead') = :'c30' AS refresh_due_as_is;
SELECT turnstile.credential_get(31, 'cred_err_ahead') = :'c31' AS fresh;
SELECT count(*) AS locks FROM turnstile.locks WHERE pid = pg_backend_pid();
COMMIT;
BEGIN READ ONLY;
SELECT turnstile.credential_get(32, 'cred_err_ahead');
\echo :LAST_ERROR_SQLSTATE
ROLLBACK;
BEGIN READ ONLY;
SELECT turnstile.credential_set(30, 'x', 'cred_err_ahead');
\echo :LAST_ERROR_SQLSTATE
ROLLBACK;
BEGIN READ ONLY;
SELECT turnstile.credential_invalidate(30, 'cred_err_ahead');
\echo :LAST_ERROR_SQLSTATE
ROLLBACK;
BEGIN READ ONLY;
SELECT turnstile.realm_set('cred_err_ahead', 'cred_err_login(bigint)');
\echo :LAST_ERROR_SQLSTATE
ROLLBACK;
BEGIN READ ONLY;
SELECT turnstile.realm_drop('cred_err_ahead');
\echo :LAST_ERROR_SQLSTATE
ROLLBACK;
SELECT kind, user_id FROM cred_err_calls();
SELECT user_id, status, logins FROM turnstile.credential_status
 WHERE realm = 'cred_err_ahead' ORDER BY user_id;
SELECT name, ttl FROM turnstile.realm WHERE name = 'cred_err_ahead';
SELECT turnstile.realm_drop('cred_err_ahead');

--
-- turnstile.isolation = 'serializable' outside a SERIALIZABLE transaction:
-- 25000, before anything is read or changed.
--
SET turnstile.isolation = 'serializable';
SELECT turnstile.credential_get(9, 'cred_err');
\echo :LAST_ERROR_SQLSTATE
SELECT turnstile.credential_set(9, 'x', 'cred_err');
\echo :LAST_ERROR_SQLSTATE
SELECT turnstile.credential_invalidate(9, 'cred_err');
\echo :LAST_ERROR_SQLSTATE
RESET turnstile.isolation;
SELECT user_id, status FROM turnstile.credential_status
 WHERE realm = 'cred_err' AND user_id = 9;

-- Clean up.
SELECT turnstile.realm_drop('cred_err');
SELECT count(*) AS credentials_left FROM turnstile.credential_status
 WHERE realm LIKE 'cred_err%';
DROP FUNCTION cred_err_unchanged();
DROP TABLE cred_err_before, cred_err_call;
DROP FUNCTION cred_err_login(bigint), cred_err_validate(bigint, text),
              cred_err_calls(), cred_err_login_int(integer),
              cred_err_login_varchar(bigint), cred_err_login_two(bigint, text),
              cred_err_login_set(bigint), cred_err_none(),
              cred_err_validate_one(bigint), cred_err_validate_text(bigint, text),
              cred_err_validate_int(bigint, integer);
DROP PROCEDURE cred_err_login_proc(bigint);
DROP AGGREGATE cred_err_login_agg(bigint);
DROP SEQUENCE cred_err_seq;
RESET statement_timeout;
