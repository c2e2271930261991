--
-- propagation: where the refresh runs.
--
-- 'requires_new' (the default) refreshes in a background worker's own
-- transaction: what it stores survives the caller's rollback.  'required'
-- refreshes inside the caller's transaction.  Login attempts are counted with
-- a sequence, which no rollback takes back.  What a failed refresh leaves
-- behind is credential_backoff's.
--
\set SHOW_CONTEXT never

CREATE SCHEMA prop;
CREATE SEQUENCE prop.attempts;
CREATE TABLE prop.token (user_id bigint PRIMARY KEY, token text NOT NULL, n integer NOT NULL);
CREATE TABLE prop.outage (down boolean NOT NULL);
INSERT INTO prop.outage VALUES (false);
-- the isolation level each login ran at
CREATE TABLE prop.seen (user_id bigint, isolation text);

CREATE FUNCTION prop.login(uid bigint) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
	issued text;
BEGIN
	PERFORM nextval('prop.attempts');
	INSERT INTO prop.seen VALUES (uid, current_setting('transaction_isolation'));
	IF (SELECT down FROM prop.outage) THEN
		RAISE EXCEPTION 'service unavailable' USING ERRCODE = '08006', DETAIL = 'connection refused';
	END IF;
	INSERT INTO prop.token AS t VALUES (uid, 'tok-' || uid || '-1', 1)
		ON CONFLICT (user_id) DO UPDATE
		SET n = t.n + 1, token = 'tok-' || uid || '-' || (t.n + 1)
		RETURNING token INTO issued;
	RETURN issued;
END $$;

-- a call's outcome, with the time in "next attempt after <time>" masked
CREATE FUNCTION prop.try_get(uid bigint, realm text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
	RETURN turnstile.credential_get(uid, realm);
EXCEPTION WHEN OTHERS THEN
	RETURN SQLSTATE || ': ' || regexp_replace(SQLERRM, 'after .*$', 'after <time>');
END $$;

CREATE FUNCTION prop.attempts() RETURNS bigint LANGUAGE sql AS $$
	SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM prop.attempts
$$;

-- requires_new is the default
SELECT turnstile.realm_set('new', 'prop.login(bigint)', retry_after => '1 hour');
SELECT turnstile.realm_set('req', 'prop.login(bigint)', retry_after => '1 hour',
						   propagation => 'required');
SELECT name, propagation FROM turnstile.realm WHERE name IN ('new', 'req') ORDER BY name;

-- a refresh followed by ROLLBACK: requires_new keeps the fresh credential ...
BEGIN;
SELECT turnstile.credential_get(1, 'new');
ROLLBACK;
SELECT realm, user_id, status, logins FROM turnstile.credential_status WHERE realm = 'new';
SELECT turnstile.credential_get(1, 'new');		-- the stored one, no new login
SELECT prop.attempts();

-- ... required throws it away with the transaction
BEGIN;
SELECT turnstile.credential_get(1, 'req');
ROLLBACK;
SELECT count(*) FROM turnstile.credential_status WHERE realm = 'req';
SELECT prop.attempts();
SELECT turnstile.credential_get(1, 'req');		-- logs in again
SELECT prop.attempts();

-- the worker's transaction runs at the level turnstile.isolation names
TRUNCATE prop.seen;
SELECT turnstile.credential_invalidate(1, 'new');
SELECT turnstile.credential_get(1, 'new');
SET turnstile.isolation = 'repeatable read';
SELECT turnstile.credential_invalidate(1, 'new');
SELECT turnstile.credential_get(1, 'new');
RESET turnstile.isolation;
BEGIN ISOLATION LEVEL SERIALIZABLE;
SET LOCAL turnstile.isolation = 'serializable';
SELECT turnstile.credential_invalidate(1, 'new');
SELECT turnstile.credential_get(1, 'new');
COMMIT;
SELECT isolation FROM prop.seen;

-- the caller's own transaction invalidated the credential: the worker could
-- not write that row before this transaction ends, so the refresh runs here
-- instead, and rolls back with it
BEGIN;
SELECT turnstile.credential_invalidate(2, 'new');
SELECT turnstile.credential_set(2, 'manual', 'new');
SELECT turnstile.credential_invalidate(2, 'new');
SELECT turnstile.credential_get(2, 'new');
ROLLBACK;
SELECT count(*) FROM turnstile.credential_status WHERE realm = 'new' AND user_id = 2;

-- no refresh worker outlives its call
SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'pg_turnstile refresh';

SELECT turnstile.realm_drop('new'), turnstile.realm_drop('req');
DROP SCHEMA prop CASCADE;

--
-- A login that needs a row the calling transaction has locked: the refresh
-- worker would wait for the caller, and the caller for the worker.  The
-- caller notices and raises a deadlock error (40P01) instead of hanging.
--
CREATE TABLE public.prop_account (user_id bigint PRIMARY KEY, logins integer NOT NULL);
INSERT INTO public.prop_account VALUES (9, 0);
CREATE FUNCTION public.prop_counting_login(uid bigint) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
	UPDATE prop_account SET logins = logins + 1 WHERE user_id = uid;
	RETURN 'tok-' || uid;
END $$;
SELECT turnstile.realm_set('locked', 'prop_counting_login(bigint)');
SET deadlock_timeout = '100ms';
BEGIN;
UPDATE public.prop_account SET logins = 100 WHERE user_id = 9;
SELECT turnstile.credential_get(9, 'locked');
\echo :LAST_ERROR_SQLSTATE
ROLLBACK;
RESET deadlock_timeout;
SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'pg_turnstile refresh';
SELECT turnstile.credential_get(9, 'locked');	-- without the conflicting lock
SELECT logins FROM public.prop_account;

--
-- A login that writes the credential it is producing (credential_set for its
-- own user) would wait for the user's lock its caller holds: refused at once.
--
CREATE FUNCTION public.prop_selfish_login(uid bigint) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
	PERFORM turnstile.credential_set(uid, 'sneaky', 'selfish');
	RETURN 'tok-' || uid;
END $$;
SELECT turnstile.realm_set('selfish', 'prop_selfish_login(bigint)');
SELECT turnstile.credential_get(1, 'selfish');
\echo :LAST_ERROR_SQLSTATE
SELECT turnstile.realm_set('selfish', 'prop_selfish_login(bigint)', propagation => 'required');
SELECT turnstile.credential_get(2, 'selfish');
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) FROM turnstile.credential_status WHERE realm = 'selfish' AND status <> 'failed';

SELECT turnstile.realm_drop('locked'), turnstile.realm_drop('selfish');
DROP FUNCTION public.prop_counting_login(bigint), public.prop_selfish_login(bigint);
DROP TABLE public.prop_account;

--
-- A credential that is not ASCII reaches a caller whose client_encoding is
-- not the database's as it is: the worker's answer travels in the
-- database's encoding, and only psql's output is converted.  Once it was
-- converted as if it came from the client: 'é' came back as 'Ã©' from the
-- refresh, and as 'é' from the cache afterwards.
--
CREATE FUNCTION public.prop_accented_login(uid bigint) RETURNS text LANGUAGE sql
	AS $$ SELECT 'caf' || pg_catalog.chr(233) || '-' || uid $$;
SELECT turnstile.realm_set('accented', 'prop_accented_login(bigint)');
SET client_encoding = 'LATIN1';
SELECT turnstile.credential_get(1, 'accented') = 'caf' || chr(233) || '-1' AS refreshed_as_made,
       octet_length(convert_to(turnstile.credential_get(1, 'accented'), 'UTF8')) AS bytes;
SELECT turnstile.credential_get(1, 'accented') = 'caf' || chr(233) || '-1' AS cached_as_made;
RESET client_encoding;
SELECT turnstile.realm_drop('accented');
DROP FUNCTION public.prop_accented_login(bigint);

--
-- A realm registered or replaced by the calling transaction: a worker would
-- not see it, or see it as it was, so a requires_new refresh runs in the
-- transaction, as with required, and goes with it.  Once the first raised
-- 42704 (realm does not exist) and the second used the old login.
--
CREATE FUNCTION public.prop_first_login(uid bigint) RETURNS text LANGUAGE sql
	AS $$ SELECT 'first-' || uid $$;
CREATE FUNCTION public.prop_second_login(uid bigint) RETURNS text LANGUAGE sql
	AS $$ SELECT 'second-' || uid $$;
BEGIN;
SELECT turnstile.realm_set('made_here', 'prop_first_login(bigint)');
SELECT turnstile.credential_get(1, 'made_here');
COMMIT;
BEGIN;
SELECT turnstile.realm_set('made_here', 'prop_second_login(bigint)');
SELECT turnstile.credential_get(2, 'made_here');
ROLLBACK;
-- the replacement rolled back, and the credential it made with it
SELECT turnstile.credential_get(2, 'made_here');
SELECT user_id, status FROM turnstile.credential_status WHERE realm = 'made_here' ORDER BY user_id;
SELECT turnstile.realm_drop('made_here');
DROP FUNCTION public.prop_first_login(bigint), public.prop_second_login(bigint);
