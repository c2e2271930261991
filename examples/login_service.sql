-- examples/login_service.sql — a stand-in login service for the examples.
--
-- It behaves like the services pg_turnstile is for: a login issues a new
-- token for an account and squeezes out the token issued before, so two
-- workers that log the same account in one after the other leave the first
-- one holding a token that no longer works.  The service is slow (see
-- demo.service_config), so callers pile up while a login runs.  Every login
-- is written to demo.login_log: that is what the examples count.
--
-- It registers the realm 'default', so credential_get(user_id) needs no
-- realm argument.  Run it as the owner of pg_turnstile (or a role allowed to
-- call turnstile.realm_set), in a database where the extension exists; on
-- Debian, as root, for the database app of the README:
--
--   su postgres -c 'psql -v ON_ERROR_STOP=1 -d app -f examples/login_service.sql'
--
-- An application role may call demo.validate, as it would call the real
-- service, once granted (see the README's walk-through).  Running the file
-- again keeps the log and the issued tokens.

CREATE SCHEMA IF NOT EXISTS demo;

-- How long a login takes.  A table, not a setting, so that the login also
-- sees it when it runs in pg_turnstile's background worker.
CREATE TABLE IF NOT EXISTS demo.service_config (
	login_seconds	float8	NOT NULL
);
INSERT INTO demo.service_config
	SELECT 0.1 WHERE NOT EXISTS (SELECT FROM demo.service_config);

-- The service's own state: the one token per account that works now.
CREATE TABLE IF NOT EXISTS demo.session (
	user_id		bigint	PRIMARY KEY,
	token		text	NOT NULL,
	logins		integer	NOT NULL
);

-- Every login the service performed.
CREATE TABLE IF NOT EXISTS demo.login_log (
	user_id		bigint		NOT NULL,
	token		text		NOT NULL,
	logged_in	timestamptz	NOT NULL DEFAULT pg_catalog.clock_timestamp()
);

-- Log an account in: a new token, which replaces (squeezes out) the previous.
CREATE OR REPLACE FUNCTION demo.login(user_id bigint) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
	issued text;
BEGIN
	PERFORM pg_catalog.pg_sleep(c.login_seconds) FROM demo.service_config c;
	INSERT INTO demo.session AS s
		VALUES (login.user_id, 'tok-' || login.user_id || '-1', 1)
		ON CONFLICT ON CONSTRAINT session_pkey DO UPDATE
		SET logins = s.logins + 1,
			token = 'tok-' || login.user_id || '-' || (s.logins + 1)
		RETURNING token INTO issued;
	INSERT INTO demo.login_log (user_id, token) VALUES (login.user_id, issued);
	RETURN issued;
END $$;

-- Does the service still accept this token?  (What an API call with it
-- would find out.)  It runs as its owner, so that a role granted EXECUTE on
-- it needs no access to the service's tables.
CREATE OR REPLACE FUNCTION demo.validate(user_id bigint, credential text)
RETURNS boolean
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
	SELECT EXISTS (SELECT FROM demo.session s
				   WHERE s.user_id = validate.user_id AND s.token = credential)
$$;

SELECT turnstile.realm_set('default', 'demo.login(bigint)',
						   'demo.validate(bigint,text)',
						   ttl => '10 minutes');
