--
-- upgrade: install the first released version, 1.0, with data in it, and walk
-- ALTER EXTENSION pg_turnstile UPDATE through every step of the upgrade path
-- to the default version of the control file.  After each step the data must
-- be as it was and the functions must work; at the end, the upgraded
-- extension must consist of exactly the objects of a fresh CREATE EXTENSION.
--
-- The path comes from pg_extension_update_paths, so a new version needs no
-- change here beyond one more row of step results in the expected output.
-- Timestamps never appear in the output: they are kept in tables and
-- compared.  The extension is left installed at the default version.
--
\set SHOW_CONTEXT never

-- Earlier tests created the extension at the default version: start over
-- at 1.0 (the cascade notices name whatever earlier tests left behind).
SET client_min_messages = warning;
DROP EXTENSION pg_turnstile CASCADE;
RESET client_min_messages;
CREATE EXTENSION pg_turnstile VERSION '1.0';
SELECT extversion FROM pg_extension WHERE extname = 'pg_turnstile';

-- The versions there are, and the path from 1.0 to the default version.
SELECT v.version, v.version = e.default_version AS is_default
  FROM pg_available_extension_versions v
  JOIN pg_available_extensions e USING (name)
 WHERE v.name = 'pg_turnstile'
 ORDER BY string_to_array(v.version, '.')::integer[];
SELECT default_version AS target
  FROM pg_available_extensions WHERE name = 'pg_turnstile' \gset
SELECT path FROM pg_extension_update_paths('pg_turnstile')
 WHERE source = '1.0' AND target = :'target';
-- every version can be reached from 1.0
SELECT target AS unreachable FROM pg_extension_update_paths('pg_turnstile')
 WHERE source = '1.0' AND path IS NULL;

--
-- Data made by 1.0: a plain and a hot counter, and two realms (one per
-- propagation) whose login counts its calls, with a credential logged in
-- and one stored with credential_set, one invalidated, one failed.
--
SELECT turnstile.counter_create('up_plain', 10);
SELECT turnstile.counter_incr('up_plain', 5);
SELECT turnstile.counter_create('up_hot', 100, 4);
SELECT turnstile.counter_incr('up_hot', 7);
SELECT turnstile.counter_decr('up_hot', 2);
SELECT turnstile.counter_incr('up_plain', 1, 15);
SELECT applied, value, version FROM turnstile.counter_cas('up_plain', 16, 20);

CREATE TABLE up_login_call (user_id bigint NOT NULL, realm text NOT NULL);
CREATE FUNCTION up_login_required(uid bigint) RETURNS text
LANGUAGE plpgsql AS $$
BEGIN
	INSERT INTO up_login_call VALUES (uid, 'up_required');
	IF uid = 13 THEN
		RAISE EXCEPTION 'account % is locked', uid;
	END IF;
	RETURN 'req-' || uid || '-' || (SELECT count(*) FROM up_login_call);
END $$;
CREATE FUNCTION up_login_new(uid bigint) RETURNS text
LANGUAGE plpgsql AS $$
BEGIN
	INSERT INTO up_login_call VALUES (uid, 'up_new');
	IF uid = 13 THEN
		RAISE EXCEPTION 'account % is locked', uid;
	END IF;
	RETURN 'new-' || uid || '-' || (SELECT count(*) FROM up_login_call);
END $$;
CREATE FUNCTION up_validate(uid bigint, credential text) RETURNS boolean
	LANGUAGE sql AS $$ SELECT true $$;
SELECT turnstile.realm_set('up_required', 'up_login_required(bigint)',
                           'up_validate(bigint,text)', ttl => '1 hour',
                           propagation => 'required');
SELECT turnstile.realm_set('up_new', 'up_login_new(bigint)', ttl => '1 hour',
                           retry_after => '1 hour');
SELECT turnstile.credential_get(1, 'up_required'),
       turnstile.credential_get(1, 'up_new');
SELECT turnstile.credential_set(2, 'manual-2', 'up_required'),
       turnstile.credential_set(2, 'manual-2', 'up_new');
SELECT turnstile.credential_set(3, 'manual-3', 'up_new');
SELECT turnstile.credential_invalidate(3, 'up_new');
-- a failed refresh in a transaction of its own stays recorded
SELECT turnstile.credential_get(13, 'up_new');
\echo :LAST_ERROR_SQLSTATE
SELECT realm, user_id, status, logins, validations, failures
  FROM turnstile.credential_status ORDER BY realm, user_id;
SELECT name, value, version, slots FROM turnstile.counters ORDER BY name;

-- A role granted counter_create: 1.5 replaces the function, and names the
-- role in a WARNING, with the GRANT to run again.
CREATE ROLE up_grantee;
GRANT EXECUTE ON FUNCTION turnstile.counter_create(text, bigint, integer) TO up_grantee;

-- What every step must leave as it is (the probes' counters aside).
CREATE TABLE up_counters_before AS
	SELECT * FROM turnstile.counters;
CREATE TABLE up_credentials_before AS
	SELECT s.*, turnstile.credential_get(s.user_id, s.realm) AS credential
	  FROM turnstile.credential_status s
	 WHERE s.status = 'fresh';
INSERT INTO up_credentials_before
	SELECT s.*, NULL FROM turnstile.credential_status s WHERE s.status <> 'fresh';
-- (login and validate through to_regprocedure, registered_by through
-- regrole: a step may change how they are stored, not what they name)
CREATE VIEW up_realms AS
	SELECT realm_id, name, to_regprocedure(login::text) AS login,
	       to_regprocedure(validate::text) AS validate, ttl, refresh_ahead,
	       retry_after, propagation, registered_by::regrole AS registered_by,
	       search_path
	  FROM turnstile.realm;
CREATE TABLE up_realms_before AS SELECT * FROM up_realms;

--
-- The checks after each step, one row of booleans:
--   extversion      the step's version is installed
--   counters        every counter's value, version, slots and times unchanged
--   credentials     every credential's status, counts and times unchanged
--   realms          every realm's id, settings, owner and search_path unchanged
--   cached          credential_get returns the cached credentials without
--                   calling login, and the recorded failure still holds
--                   (its SQLSTATE, without calling login)
--   counter_calls   counter_incr, counter_cas, counter_get, counter_set,
--                   counter_info and counter_drop work on new plain and hot
--                   counters
--   credential_calls  credential_set, credential_invalidate and a new login
--                   work, in both realms
--   views           turnstile.counters, turnstile.credential_status and
--                   turnstile.locks can be read; locks shows a held lock
--
CREATE FUNCTION up_check(step text,
	OUT extversion boolean, OUT counters boolean, OUT credentials boolean,
	OUT realms boolean, OUT cached boolean, OUT counter_calls boolean,
	OUT credential_calls boolean, OUT views boolean)
LANGUAGE plpgsql AS $$
DECLARE
	probe text := 'up_probe_' || step;
	hot text := 'up_probe_hot_' || step;
	cas record;
	failed_sqlstate text;
	logins_then bigint := (SELECT count(*) FROM up_login_call);
BEGIN
	extversion := (SELECT e.extversion = step FROM pg_extension e
	                WHERE e.extname = 'pg_turnstile');

	-- (the columns 1.0 had: later versions add some)
	counters := NOT EXISTS (
		(SELECT * FROM up_counters_before
		 EXCEPT SELECT name, value, version, slots, created_at, updated_at
		          FROM turnstile.counters WHERE name NOT LIKE 'up_probe%')
		UNION ALL
		(SELECT name, value, version, slots, created_at, updated_at
		   FROM turnstile.counters WHERE name NOT LIKE 'up_probe%'
		 EXCEPT SELECT * FROM up_counters_before));
	credentials := NOT EXISTS (
		(SELECT realm, user_id, status, issued_at, validated_at, expires_at,
		        logins, validations, failures, last_error, blocked_until
		   FROM up_credentials_before
		 EXCEPT
		 SELECT realm, user_id, status, issued_at, validated_at, expires_at,
		        logins, validations, failures, last_error, blocked_until
		   FROM turnstile.credential_status)
		UNION ALL
		(SELECT realm, user_id, status, issued_at, validated_at, expires_at,
		        logins, validations, failures, last_error, blocked_until
		   FROM turnstile.credential_status
		  WHERE user_id < 100
		 EXCEPT
		 SELECT realm, user_id, status, issued_at, validated_at, expires_at,
		        logins, validations, failures, last_error, blocked_until
		   FROM up_credentials_before));
	realms := NOT EXISTS (
		(TABLE up_realms_before EXCEPT TABLE up_realms)
		UNION ALL
		(TABLE up_realms EXCEPT TABLE up_realms_before));

	-- cached credentials come back as they are, with no login
	cached := NOT EXISTS (
		SELECT FROM up_credentials_before b
		 WHERE b.status = 'fresh'
		   AND turnstile.credential_get(b.user_id, b.realm) IS DISTINCT FROM b.credential);
	BEGIN
		PERFORM turnstile.credential_get(13, 'up_new');
	EXCEPTION WHEN OTHERS THEN
		failed_sqlstate := SQLSTATE;
	END;
	cached := cached AND failed_sqlstate = 'P0001'
		AND (SELECT count(*) FROM up_login_call) = logins_then;

	-- the counter functions, on counters of this step's own
	counter_calls :=
		turnstile.counter_create(probe) = 0
		AND turnstile.counter_incr(probe, 5) = 5
		AND turnstile.counter_decr(probe) = 4
		AND turnstile.counter_incr(probe, 1, 4) = 5
		AND turnstile.counter_get(probe) = 5
		AND turnstile.counter_create(hot, 10, 8) = 10
		AND turnstile.counter_incr(hot, 3) = 13
		AND turnstile.counter_get(hot) = 13;
	-- from 1.4 on: counter_incr_once and rate_limit, whose tables this
	-- backend first sees appear in the middle of its life
	IF pg_catalog.string_to_array(step, '.')::integer[] >= '{1,4}' THEN
		counter_calls := counter_calls
			AND turnstile.counter_incr_once(probe, 2, 'up-once-' || step) = 7
			AND turnstile.counter_incr_once(probe, 2, 'up-once-' || step) = 7
			AND (SELECT count = 1 FROM turnstile.rate_limit('up-rate-' || step, 5, '1 day'))
			AND (SELECT count = 2 FROM turnstile.rate_limit('up-rate-' || step, 5, '1 day'));
		PERFORM turnstile.counter_incr(probe, -2);
	END IF;
	SELECT * INTO cas FROM turnstile.counter_cas(probe, 5, 50);
	counter_calls := counter_calls AND cas.applied AND cas.value = 50;
	SELECT * INTO cas FROM turnstile.counter_cas(hot, 12, 0);
	counter_calls := counter_calls AND NOT cas.applied AND cas.value = 13;
	counter_calls := counter_calls
		AND turnstile.counter_set(hot, 1) = 1
		AND (SELECT i.value = 1 AND i.slots = 8 FROM turnstile.counter_info(hot) i)
		AND turnstile.counter_drop(hot)
		AND turnstile.counter_get(hot) IS NULL;

	-- the credential functions, on users of this step's own (100 and up)
	PERFORM turnstile.credential_set(100, 'set-' || step, 'up_required');
	credential_calls :=
		turnstile.credential_get(100, 'up_required') = 'set-' || step
		AND turnstile.credential_invalidate(100, 'up_required', 'set-' || step)
		AND turnstile.credential_get(100, 'up_required') LIKE 'req-100-%'
		AND turnstile.credential_get(101, 'up_new') LIKE 'new-101-%';
	-- (a statement of its own: the snapshot of the one above predates the logins)
	credential_calls := credential_calls
		AND (SELECT count(*) FROM up_login_call) = logins_then + 2;
	DELETE FROM turnstile.credential WHERE user_id >= 100;

	-- the views; this transaction holds the probe counter's lock
	views :=
		(SELECT count(*) FROM turnstile.counters) > 0
		AND (SELECT count(*) FROM turnstile.credential_status) > 0
		AND EXISTS (SELECT FROM turnstile.locks l
		             WHERE l.object = 'counter' AND l.counter = probe
		               AND l.pid = pg_backend_pid() AND l.granted);
END $$;

-- The checks hold before the first step ...
CREATE TABLE up_step_result AS
	SELECT 1 AS n, '1.0' AS version, c.* FROM up_check('1.0') c;
-- ... and after each step of the path: one ALTER EXTENSION per step, each
-- followed by its checks.
SELECT format('ALTER EXTENSION pg_turnstile UPDATE TO %L', s.version),
       format('INSERT INTO up_step_result SELECT %s, %L, c.* FROM up_check(%L) c',
              s.n, s.version, s.version)
  FROM pg_extension_update_paths('pg_turnstile') p,
       unnest(string_to_array(p.path, '--')) WITH ORDINALITY AS s(version, n)
 WHERE p.source = '1.0' AND p.target = :'target' AND s.n > 1
 ORDER BY s.n \gexec
SELECT version, extversion, counters, credentials, realms, cached,
       counter_calls, credential_calls, views
  FROM up_step_result ORDER BY n;
-- the walk ended at the default version
SELECT extversion = :'target' AS at_default_version
  FROM pg_extension WHERE extname = 'pg_turnstile';
-- 1.5: the counters made before have no bounds; the role granted the old
-- counter_create has no grant on the new one until it is granted again
-- (which the WARNING of the step above said), and can be dropped afterwards;
-- bounds work on old and new counters
SELECT name, value, lower, upper FROM turnstile.counters
 WHERE name NOT LIKE 'up_probe%' ORDER BY name;
SELECT has_function_privilege('up_grantee',
       'turnstile.counter_create(text, bigint, integer, bigint, bigint)', 'EXECUTE')
       AS granted;
GRANT EXECUTE ON FUNCTION turnstile.counter_create(text, bigint, integer, bigint, bigint)
  TO up_grantee;
SELECT has_function_privilege('up_grantee',
       'turnstile.counter_create(text, bigint, integer, bigint, bigint)', 'EXECUTE')
       AS granted;
REVOKE ALL ON FUNCTION turnstile.counter_create(text, bigint, integer, bigint, bigint)
  FROM up_grantee;
DROP ROLE up_grantee;
SELECT turnstile.counter_bounds('up_hot', 0, 200);
SELECT * FROM turnstile.counter_try_incr('up_hot', -1000);
SELECT turnstile.counter_decr('up_hot', 1000);
\echo :LAST_ERROR_SQLSTATE
SELECT turnstile.counter_create('up_bounded', 5, 4, 0, 10);
SELECT * FROM turnstile.counter_try_incr('up_bounded', 100, clamp => true);
SELECT name, value, slots, lower, upper FROM turnstile.counters
 WHERE name IN ('up_hot', 'up_bounded') ORDER BY name;

--
-- The upgraded extension against a fresh one: the same member objects, each
-- with the same definition (signature, attributes, body, comment, ACL;
-- columns, constraints, indexes, options; view text), the same configuration
-- tables, and the same objects in schema turnstile.
--
CREATE FUNCTION up_members(OUT object text, OUT definition text)
RETURNS SETOF record
LANGUAGE sql AS $$
	SELECT pg_describe_object(d.classid, d.objid, d.objsubid),
	       CASE d.classid
	       WHEN 'pg_proc'::regclass THEN
	           (SELECT concat_ws(' | ', pg_get_function_arguments(p.oid),
	                             pg_get_function_result(p.oid), p.prokind,
	                             p.provolatile, p.proparallel, p.proisstrict,
	                             p.prosecdef, p.proleakproof, p.procost, p.prorows,
	                             p.prolang::regproc, p.prosrc, p.probin,
	                             p.proconfig::text, p.proacl::text,
	                             obj_description(p.oid, 'pg_proc'))
	              FROM pg_proc p WHERE p.oid = d.objid)
	       WHEN 'pg_class'::regclass THEN
	           (SELECT concat_ws(' | ', c.relkind, c.relpersistence,
	                             c.reloptions::text, c.relacl::text,
	                             obj_description(c.oid, 'pg_class'),
	                             CASE c.relkind WHEN 'v' THEN pg_get_viewdef(c.oid) END,
	                             (SELECT string_agg(concat_ws(' ', a.attname,
	                                                          format_type(a.atttypid, a.atttypmod),
	                                                          a.attnotnull,
	                                                          pg_get_expr(ad.adbin, ad.adrelid),
	                                                          a.attacl::text,
	                                                          col_description(c.oid, a.attnum)),
	                                                ', ' ORDER BY a.attnum)
	                                FROM pg_attribute a
	                                LEFT JOIN pg_attrdef ad
	                                  ON ad.adrelid = a.attrelid AND ad.adnum = a.attnum
	                               WHERE a.attrelid = c.oid AND a.attnum > 0
	                                 AND NOT a.attisdropped),
	                             (SELECT string_agg(co.conname || ' ' || pg_get_constraintdef(co.oid),
	                                                ', ' ORDER BY co.conname)
	                                FROM pg_constraint co WHERE co.conrelid = c.oid),
	                             (SELECT string_agg(pg_get_indexdef(i.indexrelid), ', '
	                                                ORDER BY pg_get_indexdef(i.indexrelid))
	                                FROM pg_index i WHERE i.indrelid = c.oid),
	                             (SELECT string_agg(t.tgname || ' ' || pg_get_triggerdef(t.oid), ', '
	                                                ORDER BY t.tgname)
	                                FROM pg_trigger t
	                               WHERE t.tgrelid = c.oid AND NOT t.tgisinternal))
	              FROM pg_class c WHERE c.oid = d.objid)
	       WHEN 'pg_type'::regclass THEN
	           (SELECT concat_ws(' | ', t.typtype, t.typacl::text,
	                             obj_description(t.oid, 'pg_type'),
	                             (SELECT string_agg(a.attname || ' ' ||
	                                                format_type(a.atttypid, a.atttypmod),
	                                                ', ' ORDER BY a.attnum)
	                                FROM pg_attribute a
	                               WHERE a.attrelid = t.typrelid AND a.attnum > 0
	                                 AND NOT a.attisdropped))
	              FROM pg_type t WHERE t.oid = d.objid)
	       ELSE '(compared by name only)'
	       END
	  FROM pg_depend d
	 WHERE d.refclassid = 'pg_extension'::regclass
	   AND d.refobjid = (SELECT e.oid FROM pg_extension e WHERE e.extname = 'pg_turnstile')
	   AND d.deptype = 'e'
	UNION ALL
	-- the extension itself: its schema (with its ACL), version and configuration tables
	SELECT 'extension pg_turnstile',
	       concat_ws(' | ', e.extnamespace::regnamespace, n.nspacl::text,
	                 obj_description(n.oid, 'pg_namespace'), e.extversion,
	                 e.extrelocatable,
	                 (SELECT string_agg(cfg.rel::regclass::text || ' ' || cfg.cond, ', '
	                                    ORDER BY cfg.rel::regclass::text)
	                    FROM unnest(e.extconfig, e.extcondition) AS cfg(rel, cond)))
	  FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace
	 WHERE e.extname = 'pg_turnstile'
	UNION ALL
	-- anything in the schema that is not a member (an index, a row type, ...)
	SELECT 'in schema: ' || kind || ' ' || name, NULL
	  FROM (SELECT 'relation' AS kind, c.relname::text AS name
	          FROM pg_class c WHERE c.relnamespace = 'turnstile'::regnamespace
	        UNION ALL
	        SELECT 'function', p.oid::regprocedure::text
	          FROM pg_proc p WHERE p.pronamespace = 'turnstile'::regnamespace
	        UNION ALL
	        SELECT 'type', t.typname::text
	          FROM pg_type t WHERE t.typnamespace = 'turnstile'::regnamespace) o
$$;
CREATE TABLE up_objects_upgraded AS SELECT * FROM up_members();

-- (the upgraded install's data goes with it)
DROP VIEW up_realms;
DROP EXTENSION pg_turnstile;
CREATE EXTENSION pg_turnstile;
SELECT extversion = :'target' AS fresh_at_default_version
  FROM pg_extension WHERE extname = 'pg_turnstile';
CREATE TABLE up_objects_fresh AS SELECT * FROM up_members();
-- no difference either way
SELECT 'only after the upgrade' AS side, u.*
  FROM (TABLE up_objects_upgraded EXCEPT TABLE up_objects_fresh) u
UNION ALL
SELECT 'only in a fresh install', f.*
  FROM (TABLE up_objects_fresh EXCEPT TABLE up_objects_upgraded) f
 ORDER BY 1, 2;
-- (and the comparison compared something: functions, tables, views, types)
SELECT count(*) FILTER (WHERE object LIKE 'function %') > 0 AS functions,
       count(*) FILTER (WHERE object LIKE 'table %') > 0 AS tables,
       count(*) FILTER (WHERE object LIKE 'view %') > 0 AS views,
       count(*) FILTER (WHERE object LIKE 'type %') > 0 AS types,
       count(*) = count(DISTINCT object) AS each_once
  FROM up_objects_fresh;

-- Clean up; the extension stays, at the default version, with no realms.
DROP FUNCTION up_members(), up_check(text), up_login_required(bigint),
              up_login_new(bigint), up_validate(bigint, text);
DROP TABLE up_objects_upgraded, up_objects_fresh, up_step_result,
           up_counters_before, up_credentials_before, up_realms_before,
           up_login_call;
-- A view that calls a function which 1.5 replaces (rate_limit) stops the
-- update with 2BP01 and a message that names the function as the user
-- knows it; without the view the update goes through.
DROP EXTENSION pg_turnstile;
CREATE EXTENSION pg_turnstile VERSION '1.4';
CREATE VIEW up_limited AS
	SELECT allowed FROM turnstile.rate_limit('up-view', 1, '1 day');
ALTER EXTENSION pg_turnstile UPDATE TO :'target';
\echo :LAST_ERROR_SQLSTATE
DROP VIEW up_limited;
-- A role that may read turnstile.rate_limits: from 1.5 the view reads through
-- rate_limit_list(), which the update names the role for in a WARNING, with
-- the GRANT to run; the key counted at 1.4 is there afterwards.
CREATE ROLE up_reader;
GRANT USAGE ON SCHEMA turnstile TO up_reader;
GRANT SELECT ON turnstile.rate_limits TO up_reader;
SELECT allowed, count FROM turnstile.rate_limit('up-kept', 5, '1000 days');
ALTER EXTENSION pg_turnstile UPDATE TO :'target';
SET ROLE up_reader;
SELECT key, count FROM turnstile.rate_limits WHERE key = 'up-kept';
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;
GRANT EXECUTE ON FUNCTION turnstile.rate_limit_list() TO up_reader;
SET ROLE up_reader;
SELECT key, count, remaining FROM turnstile.rate_limits WHERE key = 'up-kept';
RESET ROLE;
REVOKE ALL ON FUNCTION turnstile.rate_limit_list() FROM up_reader;
REVOKE ALL ON turnstile.rate_limits FROM up_reader;
REVOKE ALL ON SCHEMA turnstile FROM up_reader;
DROP ROLE up_reader;
DELETE FROM turnstile.rate_limit WHERE key = 'up-kept';
SELECT extversion = :'target' AS at_default_version
  FROM pg_extension WHERE extname = 'pg_turnstile';

SELECT count(*) AS realms FROM turnstile.realm;
SELECT count(*) AS counters FROM turnstile.counters;
