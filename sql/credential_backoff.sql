--
-- backoff: a failed refresh keeps its SQLSTATE and is recorded, and holds
-- off new attempts for the realm's retry_after: meanwhile callers get the
-- recorded failure at once, or a credential that is still valid; a success
-- clears it.  With 'requires_new' the record survives the caller's
-- rollback; with 'required' the whole attempt rolls back.  Login attempts
-- are counted with a sequence, which no rollback takes back.
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

SELECT turnstile.realm_set('new', 'prop.login(bigint)', retry_after => '1 hour');
SELECT turnstile.realm_set('req', 'prop.login(bigint)', retry_after => '1 hour',
						   propagation => 'required');
SELECT turnstile.credential_get(1, 'new');

-- a failing login: the error keeps its SQLSTATE, and the failure is recorded
-- even though the caller's transaction rolls back
UPDATE prop.outage SET down = true;
SELECT turnstile.credential_invalidate(1, 'new');
SELECT prop.attempts() AS attempts_before \gset
BEGIN;
SELECT turnstile.credential_get(1, 'new');
\echo :LAST_ERROR_SQLSTATE
ROLLBACK;
SELECT status, failures, last_error, blocked_until > now() AS blocked
  FROM turnstile.credential_status WHERE realm = 'new' AND user_id = 1;
SELECT prop.attempts() - :attempts_before AS login_attempts;

-- within retry_after: the recorded failure at once, same SQLSTATE, no login
SELECT prop.try_get(1, 'new');
SELECT prop.try_get(1, 'new');
SELECT prop.attempts() - :attempts_before AS login_attempts;

-- a missing credential fails the same way, and is recorded as 'failed'
SELECT prop.try_get(3, 'new');
SELECT prop.try_get(3, 'new');
SELECT user_id, status, failures FROM turnstile.credential_status
 WHERE realm = 'new' AND user_id = 3;
SELECT prop.attempts() - :attempts_before AS login_attempts;

-- while retry_after holds, a credential that is still valid is returned:
-- age user 4's credential into its refresh-ahead window, fail the refresh
SELECT turnstile.realm_set('ahead', 'prop.login(bigint)', ttl => '1 hour',
						   refresh_ahead => '10 minutes', retry_after => '1 hour');
UPDATE prop.outage SET down = false;
SELECT turnstile.credential_get(4, 'ahead');
UPDATE turnstile.credential SET validated_at = validated_at - interval '55 minutes'
 WHERE user_id = 4;
UPDATE prop.outage SET down = true;
SELECT turnstile.credential_get(4, 'ahead');	-- the refresh fails ...
\echo :LAST_ERROR_SQLSTATE
SELECT turnstile.credential_get(4, 'ahead');	-- ... then the valid one is returned
SELECT status, failures FROM turnstile.credential_status WHERE realm = 'ahead';

-- the service is back; once retry_after has passed (here: set to zero, which
-- applies to failures already recorded), a success clears the failure state
UPDATE prop.outage SET down = false;
SELECT turnstile.realm_set('new', 'prop.login(bigint)', retry_after => '0');
SELECT turnstile.credential_get(1, 'new');
SELECT turnstile.credential_get(3, 'new');
SELECT user_id, status, failures, last_error, blocked_until
  FROM turnstile.credential_status WHERE realm = 'new' ORDER BY user_id;
SELECT prop.attempts() - :attempts_before AS login_attempts;

-- the failure record lives in the worker's transaction only with
-- requires_new; with required the whole attempt rolls back
UPDATE prop.outage SET down = true;
SELECT turnstile.credential_get(5, 'req');
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) FROM turnstile.credential_status WHERE realm = 'req' AND user_id = 5;
UPDATE prop.outage SET down = false;

SELECT turnstile.realm_drop('new'), turnstile.realm_drop('req'), turnstile.realm_drop('ahead');
DROP SCHEMA prop CASCADE;
