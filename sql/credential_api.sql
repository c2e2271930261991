--
-- credential_api: the whole credential API in one session, against a small
-- login service written in PL/pgSQL.
--
-- Timestamps never appear in the output: they are kept in psql variables
-- with \gset and compared.  Credentials are aged by moving validated_at back
-- in turnstile.credential (as superuser) instead of sleeping.  Errors belong
-- to credential_errors, roles and privileges to credential_security.
--

-- The credential functions, with the attributes that matter to callers:
-- volatile, parallel unsafe (they take turnstile locks), not STRICT (NULLs
-- raise, see credential_errors) and not SECURITY DEFINER.
SELECT p.oid::regprocedure AS function, p.provolatile, p.proparallel,
       p.proisstrict, p.prosecdef, p.prorettype::regtype AS returns
  FROM pg_proc p
 WHERE p.pronamespace = 'turnstile'::regnamespace
   AND (p.proname LIKE 'realm%' OR p.proname LIKE 'credential%')
 ORDER BY p.oid::regprocedure::text;

-- The defaults callers rely on: realm 'default', ttl 30 minutes, no
-- refresh-ahead window, retry_after 30 seconds, propagation 'requires_new'.
SELECT p.proname, a.n, a.argument
  FROM pg_proc p,
       regexp_split_to_table(pg_get_function_arguments(p.oid), ', ')
         WITH ORDINALITY AS a(argument, n)
 WHERE p.pronamespace = 'turnstile'::regnamespace
   AND p.proname IN ('realm_set', 'realm_drop', 'credential_get',
                     'credential_set', 'credential_invalidate')
 ORDER BY p.proname, a.n;

-- The relations behind them, each with a comment.
SELECT c.oid::regclass AS relation, c.relkind,
       obj_description(c.oid, 'pg_class') IS NOT NULL AS commented
  FROM pg_class c
 WHERE c.relnamespace = 'turnstile'::regnamespace
   AND c.relname IN ('realm', 'credential', 'credential_status')
 ORDER BY c.oid::regclass::text;
SELECT p.oid::regprocedure::text AS uncommented
  FROM pg_proc p
 WHERE p.pronamespace = 'turnstile'::regnamespace
   AND (p.proname LIKE 'realm%' OR p.proname LIKE 'credential%')
   AND obj_description(p.oid, 'pg_proc') IS NULL;

-- The view's columns: the state of a credential, never the credential.
SELECT column_name, data_type
  FROM information_schema.columns
 WHERE table_schema = 'turnstile' AND table_name = 'credential_status'
 ORDER BY ordinal_position;

-- pg_dump keeps realms and credentials (configuration tables, every row).
SELECT cfg.relation::regclass, cfg.condition = '' AS every_row
  FROM pg_extension e,
       unnest(e.extconfig, e.extcondition) AS cfg(relation, condition)
 WHERE e.extname = 'pg_turnstile'
   AND cfg.relation IN ('turnstile.realm'::regclass, 'turnstile.credential'::regclass)
 ORDER BY cfg.relation::regclass::text;

--
-- The login service.  cred_svc_token holds the one token the service
-- accepts per user: a new login replaces it, squeezing the old one out, and
-- validate says whether a token is still the accepted one.  cred_svc_call
-- logs every call the service gets; the sequence counts logins in a way a
-- rollback cannot undo.
--
CREATE TABLE cred_svc_token (user_id bigint PRIMARY KEY, token text NOT NULL,
                             n integer NOT NULL);
CREATE TABLE cred_svc_call (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                            kind text NOT NULL, user_id bigint NOT NULL,
                            credential text);
CREATE SEQUENCE cred_svc_logins;
CREATE FUNCTION cred_svc_login(uid bigint) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
	issued text;
BEGIN
	PERFORM nextval('cred_svc_logins');
	INSERT INTO cred_svc_call (kind, user_id) VALUES ('login', uid);
	INSERT INTO cred_svc_token AS t VALUES (uid, 'tok-' || uid || '-1', 1)
		ON CONFLICT (user_id) DO UPDATE
		SET n = t.n + 1, token = 'tok-' || uid || '-' || (t.n + 1)
		RETURNING token INTO issued;
	RETURN issued;
END $$;
CREATE FUNCTION cred_svc_validate(uid bigint, credential text) RETURNS boolean
LANGUAGE plpgsql AS $$
BEGIN
	INSERT INTO cred_svc_call (kind, user_id, credential)
		VALUES ('validate', uid, credential);
	RETURN EXISTS (SELECT FROM cred_svc_token
	                WHERE user_id = uid AND token = credential);
END $$;
-- A second service for the realms that have no validate: every login
-- hands out a new credential.
CREATE SEQUENCE cred_other_seq;
CREATE FUNCTION cred_other_login(uid bigint) RETURNS text
LANGUAGE sql AS $$ SELECT 'other-' || uid || '-' || nextval('cred_other_seq') $$;

-- the calls the service got since the last look, then forget them
CREATE FUNCTION cred_svc_calls(OUT kind text, OUT user_id bigint, OUT credential text)
RETURNS SETOF record
LANGUAGE sql AS $$
	WITH gone AS (DELETE FROM cred_svc_call RETURNING *)
	SELECT kind, user_id, credential FROM gone ORDER BY id
$$;

--
-- realm_set registers a realm; the defaults fill what is not given.
--
-- Every realm in this file asks for propagation 'required': the refresh runs
-- inside the caller's transaction, holds the user's lock until that ends,
-- and rolls back with it.  'requires_new', the default, has its own test
-- (credential_propagation).
--
SELECT turnstile.realm_set('cred_api', 'cred_svc_login(bigint)',
                           'cred_svc_validate(bigint,text)', ttl => '1 hour',
                           propagation => 'required');
SELECT name, login, validate, ttl, refresh_ahead, retry_after, propagation,
       registered_by = current_user::regrole AS registered_by_me
  FROM turnstile.realm
 WHERE name = 'cred_api';
-- a realm without credentials has no status rows
SELECT count(*) FROM turnstile.credential_status WHERE realm = 'cred_api';
SELECT realm_id AS api_id FROM turnstile.realm WHERE name = 'cred_api' \gset

--
-- credential_get on a missing credential logs in once; the second call gets
-- the cached credential without calling the service.
--
SELECT clock_timestamp() AS t0 \gset
SELECT turnstile.credential_get(1, 'cred_api');
SELECT turnstile.credential_get(1, 'cred_api');
SELECT kind, user_id, credential FROM cred_svc_calls();
SELECT realm, user_id, status, logins, validations, failures, last_error,
       blocked_until,
       issued_at >= :'t0' AS issued_now,
       issued_at = validated_at AS validated_at_login,
       expires_at = validated_at + interval '1 hour' AS expires_after_ttl
  FROM turnstile.credential_status
 WHERE realm = 'cred_api';
SELECT issued_at AS i1, validated_at AS v1
  FROM turnstile.credential_status
 WHERE realm = 'cred_api' AND user_id = 1 \gset

-- A fresh credential is returned without taking the user's lock.
BEGIN;
SELECT turnstile.credential_get(1, 'cred_api');
SELECT count(*) AS locks_of_a_fresh_get
  FROM turnstile.locks
 WHERE pid = pg_backend_pid();
COMMIT;
SELECT kind, user_id, credential FROM cred_svc_calls();

--
-- Expired, and the service still accepts it: validate is called, the same
-- credential comes back and is valid from now; no login.
--
UPDATE turnstile.credential SET validated_at = validated_at - interval '2 hours'
 WHERE realm_id = :api_id AND user_id = 1;
SELECT status, validated_at = :'v1'::timestamptz - interval '2 hours' AS aged
  FROM turnstile.credential_status
 WHERE realm = 'cred_api' AND user_id = 1;
SELECT turnstile.credential_get(1, 'cred_api');
SELECT kind, user_id, credential FROM cred_svc_calls();
SELECT status, logins, validations,
       issued_at = :'i1' AS same_issue,
       validated_at > :'v1' AS validated_again,
       expires_at = validated_at + interval '1 hour' AS expires_after_ttl
  FROM turnstile.credential_status
 WHERE realm = 'cred_api' AND user_id = 1;
SELECT turnstile.credential_get(1, 'cred_api');
SELECT kind, user_id, credential FROM cred_svc_calls();

--
-- Squeezed out: someone else logged the user in, so the service no longer
-- accepts the cached token.  After expiry validate says no and one new login
-- replaces it.
--
SELECT cred_svc_login(1) AS squeezing_login;
SELECT kind, user_id, credential FROM cred_svc_calls();
-- while fresh, the cached credential is still returned without asking
SELECT turnstile.credential_get(1, 'cred_api');
UPDATE turnstile.credential SET validated_at = validated_at - interval '2 hours'
 WHERE realm_id = :api_id AND user_id = 1;
SELECT turnstile.credential_get(1, 'cred_api');
SELECT kind, user_id, credential FROM cred_svc_calls();
SELECT status, logins, validations,
       issued_at > :'i1' AS issued_again,
       issued_at <= validated_at AS ordered
  FROM turnstile.credential_status
 WHERE realm = 'cred_api' AND user_id = 1;
SELECT turnstile.credential_get(1, 'cred_api');

--
-- credential_invalidate: true when it marked a credential, false when there
-- was nothing (left) to mark.  The next credential_get logs in again without
-- calling validate: the credential is known not to work.
--
SELECT turnstile.credential_invalidate(1, 'cred_api');
SELECT turnstile.credential_invalidate(1, 'cred_api');
SELECT turnstile.credential_invalidate(99, 'cred_api') AS no_such_user;
SELECT status, logins, validations
  FROM turnstile.credential_status
 WHERE realm = 'cred_api' AND user_id = 1;
SELECT turnstile.credential_get(1, 'cred_api');
SELECT kind, user_id, credential FROM cred_svc_calls();
SELECT status, logins, validations
  FROM turnstile.credential_status
 WHERE realm = 'cred_api' AND user_id = 1;
-- invalidating creates no row for a user without one
SELECT count(*) FROM turnstile.credential_status
 WHERE realm = 'cred_api' AND user_id = 99;

-- With the credential given, only that credential is invalidated: a worker
-- reporting an old token does not throw away the current one.
SELECT turnstile.credential_invalidate(1, 'cred_api', 'tok-1-3') AS stale;
SELECT status FROM turnstile.credential_status
 WHERE realm = 'cred_api' AND user_id = 1;
SELECT turnstile.credential_get(1, 'cred_api');
SELECT kind, user_id, credential FROM cred_svc_calls();
SELECT turnstile.credential_invalidate(1, 'cred_api', 'tok-1-4') AS current;
SELECT status FROM turnstile.credential_status
 WHERE realm = 'cred_api' AND user_id = 1;
SELECT turnstile.credential_invalidate(1, 'cred_api', 'tok-1-4') AS again;
SELECT turnstile.credential_get(1, 'cred_api');
SELECT kind, user_id, credential FROM cred_svc_calls();

--
-- credential_set stores a credential obtained elsewhere as valid from now:
-- fresh, counts unchanged, returned by credential_get without any call.
--
SELECT logins AS logins_before, validations AS validations_before,
       validated_at AS v_before
  FROM turnstile.credential_status
 WHERE realm = 'cred_api' AND user_id = 1 \gset
SELECT turnstile.credential_set(1, 'manual-1', 'cred_api');
SELECT status, logins = :logins_before AS same_logins,
       validations = :validations_before AS same_validations,
       validated_at > :'v_before' AS valid_from_now,
       issued_at > :'v_before' AS issued_now
  FROM turnstile.credential_status
 WHERE realm = 'cred_api' AND user_id = 1;
SELECT turnstile.credential_get(1, 'cred_api');
SELECT kind, user_id, credential FROM cred_svc_calls();
-- it replaces an invalidated credential too
SELECT turnstile.credential_invalidate(1, 'cred_api');
SELECT turnstile.credential_set(1, 'manual-2', 'cred_api');
SELECT status FROM turnstile.credential_status
 WHERE realm = 'cred_api' AND user_id = 1;
SELECT turnstile.credential_get(1, 'cred_api');
-- for a user without a row it creates one, with no logins
SELECT turnstile.credential_set(2, 'manual-for-2', 'cred_api');
SELECT user_id, status, logins, validations
  FROM turnstile.credential_status
 WHERE realm = 'cred_api'
 ORDER BY user_id;
SELECT turnstile.credential_get(2, 'cred_api');
-- once expired, the stored credential is validated like any other; this
-- service never issued it, so it says no and the user is logged in
UPDATE turnstile.credential SET validated_at = validated_at - interval '2 hours'
 WHERE realm_id = :api_id AND user_id = 2;
SELECT turnstile.credential_get(2, 'cred_api');
SELECT kind, user_id, credential FROM cred_svc_calls();
SELECT user_id, status, logins, validations
  FROM turnstile.credential_status
 WHERE realm = 'cred_api' AND user_id = 2;

--
-- refresh_ahead: inside the window before expiry the credential is
-- 'refresh_due'; it still works, and the caller that gets the user's lock
-- without waiting (in one session: always) refreshes it.
--
SELECT turnstile.realm_set('cred_ahead', 'cred_svc_login(bigint)',
                           'cred_svc_validate(bigint,text)',
                           ttl => '1 hour', refresh_ahead => '10 minutes',
                           propagation => 'required');
SELECT realm_id AS ahead_id FROM turnstile.realm WHERE name = 'cred_ahead' \gset
SELECT turnstile.credential_get(10, 'cred_ahead');
SELECT kind, user_id, credential FROM cred_svc_calls();
-- validated 45 minutes ago: still before the window
UPDATE turnstile.credential SET validated_at = validated_at - interval '45 minutes'
 WHERE realm_id = :ahead_id AND user_id = 10;
SELECT status FROM turnstile.credential_status WHERE realm = 'cred_ahead';
SELECT turnstile.credential_get(10, 'cred_ahead');
SELECT kind, user_id, credential FROM cred_svc_calls();
-- validated 55 minutes ago: inside the window
UPDATE turnstile.credential SET validated_at = validated_at - interval '10 minutes'
 WHERE realm_id = :ahead_id AND user_id = 10;
SELECT status, validations FROM turnstile.credential_status
 WHERE realm = 'cred_ahead';
SELECT validated_at AS v_due FROM turnstile.credential_status
 WHERE realm = 'cred_ahead' AND user_id = 10 \gset
-- the refresh holds the user's lock until the transaction ends, and
-- turnstile.locks shows it decoded to the realm and the user
BEGIN;
SELECT turnstile.credential_get(10, 'cred_ahead');
SELECT object, counter, slot, realm, user_id, mode, granted
  FROM turnstile.locks
 WHERE pid = pg_backend_pid();
COMMIT;
SELECT count(*) AS locks_after_commit
  FROM turnstile.locks
 WHERE pid = pg_backend_pid();
SELECT kind, user_id, credential FROM cred_svc_calls();
SELECT status, logins, validations, validated_at > :'v_due' AS validated_again
  FROM turnstile.credential_status
 WHERE realm = 'cred_ahead';
-- squeezed out and inside the window: validate says no, a new login
SELECT cred_svc_login(10) AS squeezing_login;
SELECT kind, user_id, credential FROM cred_svc_calls();
UPDATE turnstile.credential SET validated_at = validated_at - interval '55 minutes'
 WHERE realm_id = :ahead_id AND user_id = 10;
SELECT status FROM turnstile.credential_status WHERE realm = 'cred_ahead';
SELECT turnstile.credential_get(10, 'cred_ahead');
SELECT kind, user_id, credential FROM cred_svc_calls();
SELECT status, logins, validations FROM turnstile.credential_status
 WHERE realm = 'cred_ahead';

--
-- realm_set on an existing realm replaces its settings and keeps its
-- credentials, which the new settings then govern.
--
SELECT turnstile.realm_set('cred_ahead', 'cred_other_login(bigint)',
                           ttl => '2 hours', retry_after => '0',
                           propagation => 'required');
SELECT name, realm_id = :ahead_id AS same_id, login, validate, ttl,
       refresh_ahead, retry_after, propagation
  FROM turnstile.realm
 WHERE name = 'cred_ahead';
SELECT user_id, status, logins, validations,
       expires_at = validated_at + interval '2 hours' AS new_ttl
  FROM turnstile.credential_status
 WHERE realm = 'cred_ahead';
-- the same credential is still cached ...
SELECT turnstile.credential_get(10, 'cred_ahead');
-- ... 55 minutes old is no longer due with a 2 hour ttl and no window ...
UPDATE turnstile.credential SET validated_at = validated_at - interval '55 minutes'
 WHERE realm_id = :ahead_id AND user_id = 10;
SELECT status FROM turnstile.credential_status WHERE realm = 'cred_ahead';
SELECT turnstile.credential_get(10, 'cred_ahead');
-- ... and once expired, the new login runs without validate
UPDATE turnstile.credential SET validated_at = validated_at - interval '2 hours'
 WHERE realm_id = :ahead_id AND user_id = 10;
SELECT turnstile.credential_get(10, 'cred_ahead');
SELECT kind, user_id, credential FROM cred_svc_calls();
SELECT status, logins, validations FROM turnstile.credential_status
 WHERE realm = 'cred_ahead';

--
-- Realms are independent: the same user id in two realms has two
-- credentials, and what happens to one leaves the other alone.
--
SELECT turnstile.realm_set('cred_other', 'cred_other_login(bigint)',
                           propagation => 'required');
SELECT turnstile.credential_get(1, 'cred_other');
SELECT turnstile.credential_get(1, 'cred_api');
SELECT turnstile.credential_invalidate(1, 'cred_other');
SELECT turnstile.credential_get(1, 'cred_api');
SELECT realm, user_id, status FROM turnstile.credential_status
 WHERE user_id = 1 AND realm IN ('cred_api', 'cred_other')
 ORDER BY realm;
SELECT turnstile.credential_get(1, 'cred_other');
SELECT turnstile.credential_set(1, 'manual-other', 'cred_other');
SELECT turnstile.credential_get(1, 'cred_api');
SELECT turnstile.credential_get(1, 'cred_other');
-- the service of cred_api saw none of it
SELECT kind, user_id, credential FROM cred_svc_calls();
-- the default realm is called 'default'
SELECT turnstile.realm_set('default', 'cred_other_login(bigint)',
                           propagation => 'required');
SELECT turnstile.credential_get(1);
SELECT turnstile.credential_get(1, 'default');
SELECT turnstile.credential_invalidate(1);
SELECT turnstile.credential_set(1, 'manual-default');
SELECT turnstile.credential_get(1);
SELECT realm, user_id, status FROM turnstile.credential_status
 WHERE user_id = 1 AND realm IN ('cred_api', 'cred_other', 'default')
 ORDER BY realm;

--
-- User ids are whole bigints: zero, negative and the extremes, each its own
-- credential and its own lock, decoded by turnstile.locks.
--
BEGIN;
SELECT u AS user_id, turnstile.credential_get(u, 'cred_other') IS NOT NULL AS got
  FROM unnest(ARRAY[0, -1, 4294967296, 9223372036854775807,
                    -9223372036854775808]::bigint[]) AS u;
SELECT object, realm, user_id, mode, granted
  FROM turnstile.locks
 WHERE pid = pg_backend_pid()
 ORDER BY user_id;
COMMIT;
SELECT user_id, status, logins FROM turnstile.credential_status
 WHERE realm = 'cred_other'
 ORDER BY user_id;
SELECT turnstile.credential_get(-9223372036854775808, 'cred_other')
     = turnstile.credential_get(-9223372036854775808, 'cred_other') AS cached;
SELECT turnstile.credential_invalidate(-1, 'cred_other');
SELECT turnstile.credential_set(9223372036854775807, 'manual-max', 'cred_other');
SELECT turnstile.credential_get(9223372036854775807, 'cred_other');
SELECT user_id, status FROM turnstile.credential_status
 WHERE realm = 'cred_other' AND user_id IN (-1, 9223372036854775807)
 ORDER BY user_id;

--
-- Realm names are opaque text: quotes, unicode and SQL round-trip, and the
-- longest name has 200 characters.
--
SELECT turnstile.realm_set(r, 'cred_other_login(bigint)', propagation => 'required')
  FROM unnest(ARRAY['it''s "quoted"', 'zähler 🚀',
                    'x''); DELETE FROM turnstile.credential; --',
                    repeat('é', 200)]) AS r;
SELECT to_json(r) AS realm, turnstile.credential_get(5, r) LIKE 'other-5-%' AS got
  FROM unnest(ARRAY['it''s "quoted"', 'zähler 🚀',
                    'x''); DELETE FROM turnstile.credential; --']) AS r;
SELECT turnstile.credential_get(5, repeat('é', 200)) LIKE 'other-5-%' AS got;
SELECT char_length(realm) AS chars, user_id, status
  FROM turnstile.credential_status
 WHERE realm = repeat('é', 200);
SELECT to_json(r) AS realm, turnstile.realm_drop(r)
  FROM unnest(ARRAY['it''s "quoted"', 'zähler 🚀',
                    'x''); DELETE FROM turnstile.credential; --']) AS r;
SELECT turnstile.realm_drop(repeat('é', 200));
-- nothing else was deleted
SELECT realm, count(*) FROM turnstile.credential_status
 WHERE realm LIKE 'cred%' GROUP BY realm ORDER BY realm;

--
-- Named arguments.
--
SELECT turnstile.credential_get(realm => 'cred_api', user_id => 1);
SELECT turnstile.credential_set(credential => 'manual-named', realm => 'cred_api',
                                user_id => 3);
SELECT turnstile.credential_invalidate(realm => 'cred_api', credential => 'manual-named',
                                       user_id => 3);
SELECT turnstile.realm_set(propagation => 'required', login => 'cred_other_login(bigint)',
                           realm => 'cred_named', ttl => '5 minutes');
SELECT name, login, validate, ttl, refresh_ahead, retry_after, propagation
  FROM turnstile.realm WHERE name = 'cred_named';
SELECT turnstile.realm_drop(realm => 'cred_named');

--
-- With propagation 'required' the refresh is part of the caller's
-- transaction: a rollback throws the login away.  The login did
-- happen (the sequence is not rolled back) but the service's call log,
-- written in the same transaction, is gone as well.
--
SELECT last_value AS logins_before FROM cred_svc_logins \gset
BEGIN;
SELECT turnstile.credential_get(50, 'cred_api');
SELECT user_id, status, logins FROM turnstile.credential_status
 WHERE realm = 'cred_api' AND user_id = 50;
ROLLBACK;
SELECT count(*) AS rows_after_rollback FROM turnstile.credential_status
 WHERE realm = 'cred_api' AND user_id = 50;
SELECT last_value - :logins_before AS logins_done FROM cred_svc_logins;
SELECT kind, user_id, credential FROM cred_svc_calls();
-- the next call logs in again (and the service, rolled back too, hands out
-- its first token again)
SELECT turnstile.credential_get(50, 'cred_api');
SELECT last_value - :logins_before AS logins_done FROM cred_svc_logins;
SELECT user_id, status, logins FROM turnstile.credential_status
 WHERE realm = 'cred_api' AND user_id = 50;

-- ROLLBACK TO SAVEPOINT undoes a refresh made after the savepoint only.
SELECT turnstile.credential_invalidate(50, 'cred_api');
BEGIN;
SAVEPOINT s;
SELECT turnstile.credential_get(50, 'cred_api');
ROLLBACK TO SAVEPOINT s;
SELECT status FROM turnstile.credential_status
 WHERE realm = 'cred_api' AND user_id = 50;
SELECT turnstile.credential_get(50, 'cred_api');
COMMIT;
SELECT last_value - :logins_before AS logins_done FROM cred_svc_logins;
SELECT user_id, status, logins FROM turnstile.credential_status
 WHERE realm = 'cred_api' AND user_id = 50;
SELECT kind, user_id, credential FROM cred_svc_calls();

-- credential_set, credential_invalidate, realm_set and realm_drop roll back
-- too.
BEGIN;
SELECT turnstile.credential_set(50, 'manual-rolled-back', 'cred_api');
SELECT turnstile.credential_invalidate(1, 'cred_api');
SELECT turnstile.realm_set('cred_api', 'cred_other_login(bigint)', ttl => '1 minute',
                           propagation => 'required');
SELECT turnstile.realm_drop('cred_other');
ROLLBACK;
SELECT turnstile.credential_get(50, 'cred_api');
SELECT name, login, validate, ttl FROM turnstile.realm
 WHERE name IN ('cred_api', 'cred_other') ORDER BY name;
SELECT realm, user_id, status FROM turnstile.credential_status
 WHERE user_id = 1 AND realm IN ('cred_api', 'cred_other')
 ORDER BY realm;
SELECT kind, user_id, credential FROM cred_svc_calls();

--
-- realm_drop: true if it existed, then false; the realm's credentials go
-- with it, the other realms' stay.
--
SELECT turnstile.realm_drop('cred_ahead');
SELECT count(*) FROM turnstile.credential_status WHERE realm = 'cred_ahead';
SELECT turnstile.realm_drop('cred_ahead');
SELECT realm, count(*) FROM turnstile.credential_status
 WHERE realm LIKE 'cred%' GROUP BY realm ORDER BY realm;
-- registered again (its realm id may be reused), it starts without
-- credentials
SELECT turnstile.realm_set('cred_ahead', 'cred_svc_login(bigint)',
                           propagation => 'required');
SELECT count(*) FROM turnstile.credential_status WHERE realm = 'cred_ahead';
SELECT turnstile.credential_get(10, 'cred_ahead');
SELECT user_id, status, logins FROM turnstile.credential_status
 WHERE realm = 'cred_ahead';

--
-- A backend remembers where the rows of its fresh hits were, and checks at
-- every hit that they are still the current ones: a changed credential row,
-- a changed realm and a rewrite of both tables are all seen at once.
--
SELECT count(*) AS earlier_calls FROM cred_svc_calls();
SELECT turnstile.credential_get(20, 'cred_api') AS first_token \gset
SELECT turnstile.credential_get(20, 'cred_api') = :'first_token' AS same_token;
VACUUM FULL turnstile.credential, turnstile.realm;
SELECT turnstile.credential_get(20, 'cred_api') = :'first_token' AS same_token;
-- 50 minutes old: still fresh with a 1 hour ttl ...
UPDATE turnstile.credential SET validated_at = validated_at - interval '50 minutes'
 WHERE realm_id = :api_id AND user_id = 20;
SELECT turnstile.credential_get(20, 'cred_api') = :'first_token' AS same_token;
-- ... but not with 30 minutes, which the very next call knows
SELECT turnstile.realm_set('cred_api', 'cred_svc_login(bigint)',
                           'cred_svc_validate(bigint,text)', ttl => '30 minutes',
                           propagation => 'required');
SELECT turnstile.credential_get(20, 'cred_api') = :'first_token' AS same_token;
SELECT kind, user_id FROM cred_svc_calls();
SELECT status, logins, validations FROM turnstile.credential_status
 WHERE realm = 'cred_api' AND user_id = 20;

-- The memory of row places is bounded: it is emptied after 2,048 users, and
-- the hits go on being right across that.
SELECT count(turnstile.credential_set(u, 'many-' || u, 'cred_api'))
  FROM generate_series(1001, 2000) u;
SELECT count(turnstile.credential_set(u, 'many-' || u, 'cred_api'))
  FROM generate_series(2001, 3500) u;
SELECT count(*) FILTER (WHERE turnstile.credential_get(u, 'cred_api') = 'many-' || u) AS right_hits
  FROM generate_series(1001, 3500) u;
SELECT count(*) FILTER (WHERE turnstile.credential_get(u, 'cred_api') = 'many-' || u) AS right_hits
  FROM generate_series(1001, 3500) u;
SELECT count(*) AS service_calls FROM cred_svc_calls();

-- Clean up.
SELECT r, turnstile.realm_drop(r)
  FROM unnest(ARRAY['cred_api', 'cred_ahead', 'cred_other', 'default']) AS r;
SELECT count(*) AS credentials_left FROM turnstile.credential_status
 WHERE realm IN ('cred_api', 'cred_ahead', 'cred_other', 'default');
DROP FUNCTION cred_svc_login(bigint), cred_svc_validate(bigint, text),
              cred_other_login(bigint), cred_svc_calls();
DROP TABLE cred_svc_token, cred_svc_call;
DROP SEQUENCE cred_svc_logins, cred_other_seq;
