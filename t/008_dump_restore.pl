# pg_dump and restore keep everything turnstile holds.  A database uses plain,
# hot and set counters, three realms (login and validate functions in a schema
# of the database, non-default ttl, refresh_ahead, retry_after and both
# propagations, one realm registered by a non-superuser role and one granted
# to an application role) and their credentials: fresh, expired, invalidated,
# stored with credential_set, and one with a recorded failed login.  It is
# dumped, and restored into new databases in which the dump itself runs
# CREATE EXTENSION: with pg_restore from the custom format, and with psql from
# the plain format, and then into a new cluster whose roles have other OIDs.
#
# Each restored database must show, with no error from the restore:
#   - the same counters, slot rows, credentials, credential status, realms,
#     realm grants, privileges and extension version, down to the timestamps;
#   - the cached credentials, returned without a new login, the expired one
#     revalidated, the invalidated one logged in again by the realm's login
#     function, and the recorded failure still holding off new attempts;
#   - every counter function working, hot increments still spread over
#     slots, turnstile.locks decoding held locks, and realm_set working.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('dump');
$node->init(extra => [ '-E', 'UTF8', '--no-locale' ]);
$node->start;
my $superuser = $node->safe_psql('postgres', 'SELECT current_user');

# The database first, then the roles, so that a new cluster that gets the
# roles before anything else gives them other OIDs (the last part).
$node->safe_psql('postgres', 'CREATE DATABASE src');
$node->safe_psql('src', q{
	CREATE EXTENSION pg_turnstile;
	CREATE ROLE svc_admin;
	CREATE ROLE app LOGIN;

	-- the login service lives in the database, owned by svc_admin
	CREATE SCHEMA svc AUTHORIZATION svc_admin;
	SET ROLE svc_admin;
	CREATE TABLE svc.token (user_id bigint PRIMARY KEY, token text NOT NULL, n integer NOT NULL);
	CREATE TABLE svc.login_log (user_id bigint NOT NULL, token text NOT NULL, by_role name NOT NULL);
	CREATE SEQUENCE svc.failed_attempts;
	CREATE FUNCTION svc.login(uid bigint) RETURNS text LANGUAGE plpgsql AS $$
	DECLARE
		issued text;
	BEGIN
		INSERT INTO svc.token AS t VALUES (uid, 'tok-' || uid || '-1', 1)
			ON CONFLICT (user_id) DO UPDATE
			SET n = t.n + 1, token = 'tok-' || uid || '-' || (t.n + 1)
			RETURNING token INTO issued;
		INSERT INTO svc.login_log VALUES (uid, issued, current_user);
		RETURN issued;
	END $$;
	CREATE FUNCTION svc.validate(uid bigint, credential text) RETURNS boolean
	LANGUAGE sql AS $$
		SELECT EXISTS (SELECT FROM svc.token WHERE user_id = uid AND token = credential)
	$$;
	CREATE FUNCTION svc.broken_login(uid bigint) RETURNS text LANGUAGE plpgsql AS $$
	BEGIN
		PERFORM nextval('svc.failed_attempts');		-- survives the rollback
		RAISE EXCEPTION 'service unavailable';
	END $$;
	RESET ROLE;

	-- svc_admin may register realms; app gets what the README grants
	GRANT USAGE ON SCHEMA turnstile TO svc_admin, app;
	GRANT EXECUTE ON FUNCTION turnstile.realm_set(text, regprocedure, regprocedure,
												  interval, interval, interval, text)
		TO svc_admin;
	GRANT EXECUTE ON FUNCTION
		turnstile.counter_incr(text, bigint),
		turnstile.counter_get(text),
		turnstile.credential_get(bigint, text),
		turnstile.counter_list()
	  TO app;
	GRANT SELECT ON turnstile.counters TO app;

	SELECT turnstile.realm_set('svc', 'svc.login(bigint)', 'svc.validate(bigint,text)',
							   ttl => '2 hours', refresh_ahead => '10 minutes',
							   retry_after => '5 minutes');
	SELECT turnstile.realm_set('flaky', 'svc.broken_login(bigint)', ttl => '1 hour',
							   retry_after => '1 hour');
	SET ROLE svc_admin;
	SELECT turnstile.realm_set('svc_required', 'svc.login(bigint)', ttl => '3 hours',
							   refresh_ahead => '15 minutes', retry_after => '1 minute',
							   propagation => 'required');
	RESET ROLE;
	SELECT turnstile.realm_grant('svc', 'app');

	-- fresh credentials; user 3's expires (validate will still accept it),
	-- user 4's is invalidated, user 13's comes from elsewhere
	SELECT turnstile.credential_get(u, 'svc') FROM generate_series(1, 4) u;
	SELECT turnstile.credential_get(u, 'svc_required') FROM generate_series(11, 12) u;
	UPDATE turnstile.credential SET validated_at = validated_at - interval '3 hours'
	 WHERE user_id = 3;
	SELECT turnstile.credential_invalidate(4, 'svc');
	SELECT turnstile.credential_set(13, 'external-13', 'svc_required');

	SELECT turnstile.counter_incr('plain', 5) FROM generate_series(1, 3);
	SELECT turnstile.counter_create('hot', 0, 8);
	SELECT turnstile.counter_set('set', 42);
	SELECT turnstile.counter_create('created', 1000);
});

# a failed login, recorded by the refresh worker (requires_new)
my ($ret, $stdout, $stderr) =
  $node->psql('src', q{SELECT turnstile.credential_get(7, 'flaky')});
like($stderr, qr/ERROR:  login of user 7 in realm "flaky" failed: service unavailable/,
	'src: the failing login raises');

# hot increments from several backends, so that several slots hold a value
$node->pgbench('--no-vacuum --client=4 --jobs=2 --transactions=25', 0,
	[qr{processed: 100/100}], [qr{^$}], 'src: hot increments',
	{ '008_hot_src' => q{SELECT turnstile.counter_incr('hot');} }, 'src');

is($node->safe_psql('src', q{
		SELECT string_agg(user_id || ' ' || status, ', ' ORDER BY realm, user_id)
		  FROM turnstile.credential_status}),
	'7 failed, 1 fresh, 2 fresh, 3 expired, 4 invalidated, 11 fresh, 12 fresh, 13 fresh',
	'src: credentials in every state');
cmp_ok($node->safe_psql('src', q{
		SELECT count(*) FROM turnstile.counter_slot WHERE name = 'hot' AND value <> 0}),
	'>', 1, 'src: the hot counter holds values in several slots');

# What must survive, as each query shows it.
my %state_query = (
	counters => 'SELECT * FROM turnstile.counters',
	counter_slots => 'SELECT * FROM turnstile.counter_slot ORDER BY name, slot',
	credential_status => 'SELECT * FROM turnstile.credential_status',
	credentials => 'SELECT * FROM turnstile.credential ORDER BY realm_id, user_id',
	realm_settings => q{
		SELECT name, login, validate, ttl, refresh_ahead, retry_after, propagation
		  FROM turnstile.realm ORDER BY name},
	realms => q{
		SELECT realm_id, name, registered_by::regrole, search_path
		  FROM turnstile.realm ORDER BY realm_id},
	realm_grants => q{
		SELECT r.name, g.grantee::regrole FROM turnstile.realm_grant g
		  JOIN turnstile.realm r USING (realm_id) ORDER BY 1, 2},
	privileges => q{
		SELECT p.oid::regprocedure::text, p.proacl::text FROM pg_proc p
		 WHERE p.pronamespace = 'turnstile'::regnamespace
		UNION ALL
		SELECT c.oid::regclass::text, c.relacl::text FROM pg_class c
		 WHERE c.relnamespace = 'turnstile'::regnamespace AND c.relkind IN ('r', 'v')
		UNION ALL
		SELECT n.nspname, n.nspacl::text FROM pg_namespace n
		 WHERE n.nspname = 'turnstile'
		ORDER BY 1},
	extension => q{
		SELECT extversion, extnamespace::regnamespace FROM pg_extension
		 WHERE extname = 'pg_turnstile'},
	service => q{
		SELECT (SELECT string_agg(user_id || ' ' || token || ' ' || by_role, ', '
								  ORDER BY user_id, token) FROM svc.login_log),
			   (SELECT last_value FROM svc.failed_attempts)},
);
my %before = map { $_ => $node->safe_psql('src', $state_query{$_}) } keys %state_query;

# The usable cached credentials, read from the table so that nothing changes
# (credential_get would revalidate user 3's).
my %cached = map { split /\|/ } split /\n/, $node->safe_psql('src', q{
	SELECT c.user_id || ' ' || r.name, c.credential
	  FROM turnstile.credential c JOIN turnstile.realm r USING (realm_id)
	 WHERE c.credential IS NOT NULL AND NOT c.invalidated});
is(join(', ', map { "$_ $cached{$_}" } sort keys %cached),
	'1 svc tok-1-1, 11 svc_required tok-11-1, 12 svc_required tok-12-1, '
	  . '13 svc_required external-13, 2 svc tok-2-1, 3 svc tok-3-1',
	'src: the cached credentials');

#
# Dump, in both formats, and restore into new databases.
#
my $dir = PostgreSQL::Test::Utils::tempdir;
$node->command_ok([ 'pg_dump', '--format=custom', "--file=$dir/src.dump", 'src' ],
	'pg_dump --format=custom');
$node->command_ok([ 'pg_dump', '--format=plain', "--file=$dir/src.sql", 'src' ],
	'pg_dump --format=plain');
$node->command_ok([ 'createdb', 'dst_custom' ], 'createdb dst_custom');
$node->command_ok([ 'createdb', 'dst_plain' ], 'createdb dst_plain');

$node->command_checks_all(
	[ 'pg_restore', '--exit-on-error', '--dbname=dst_custom', "$dir/src.dump" ],
	0, [qr{^$}], [qr{^$}], 'pg_restore into dst_custom, without a message');
$node->command_checks_all(
	[
		'psql', '-X', '-q', '--set=ON_ERROR_STOP=1', '--output=/dev/null',
		'--dbname=dst_plain', "--file=$dir/src.sql"
	],
	0, [qr{^$}], [qr{^$}], 'psql restores the plain dump into dst_plain, without a message');

# Everything the restored database must show and do.
sub check_restored
{
	my ($target, $db, $label) = @_;

	foreach my $what (sort keys %state_query)
	{
		is($target->safe_psql($db, $state_query{$what}), $before{$what},
			"$label: $what identical");
	}

	# cached credentials come back without a login, also for app
	foreach my $key (sort keys %cached)
	{
		my ($user_id, $realm) = split / /, $key;
		is(query_result($target, $db,
				"SELECT turnstile.credential_get($user_id, '$realm')"),
			$cached{$key}, "$label: credential of user $user_id in $realm is the cached one");
	}
	is(query_result($target, $db,
			q{SET ROLE app; SELECT turnstile.credential_get(1, 'svc')}),
		$cached{'1 svc'}, "$label: app may use the realm granted to it");
	like(query_result($target, $db,
			q{SET ROLE app; SELECT turnstile.credential_get(11, 'svc_required')}),
		qr/ERROR:  permission denied for realm "svc_required"/,
		"$label: but not one that was not granted to it");
	is($target->safe_psql($db, $state_query{service}), $before{service},
		"$label: no login happened");
	is($target->safe_psql($db, q{
			SELECT validations || ' ' || logins FROM turnstile.credential_status
			 WHERE realm = 'svc' AND user_id = 3}),
		'1 1', "$label: the expired credential was revalidated");

	# the invalidated credential: a new login, by the restored login function,
	# as the role that registered the realm
	is(query_result($target, $db, q{SELECT turnstile.credential_get(4, 'svc')}),
		'tok-4-2', "$label: the invalidated credential is replaced by a new login");
	is(query_result($target, $db, q{
			SELECT turnstile.credential_invalidate(11, 'svc_required');
			SELECT turnstile.credential_get(11, 'svc_required')}),
		"t\ntok-11-2", "$label: a login in the realm svc_admin registered");
	is($target->safe_psql($db, q{
			SELECT string_agg(user_id || ' ' || by_role, ', ' ORDER BY user_id)
			  FROM svc.login_log WHERE token IN ('tok-4-2', 'tok-11-2')}),
		"4 $superuser, 11 svc_admin",
		"$label: each login ran as its realm's registering role");

	# the recorded failure still holds off new attempts
	my $blocked_until = $target->safe_psql($db, q{
		SELECT blocked_until FROM turnstile.credential_status
		 WHERE realm = 'flaky' AND user_id = 7});
	like(query_result($target, $db, q{SELECT turnstile.credential_get(7, 'flaky')}),
		qr/ERROR:  refresh of user 7 in realm "flaky" failed recently; next attempt after \Q$blocked_until\E\n.*DETAIL:  The last attempt failed: login of user 7 in realm "flaky" failed: service unavailable/s,
		"$label: the recorded failure holds off new attempts");
	is($target->safe_psql($db, 'SELECT last_value FROM svc.failed_attempts'),
		'1', "$label: without calling the login function");

	# counters
	my $plain = $target->safe_psql($db, q{SELECT turnstile.counter_get('plain')});
	is($plain, '15', "$label: counter_get");
	is($target->safe_psql($db, q{SELECT turnstile.counter_incr('plain')}),
		'16', "$label: counter_incr");
	is($target->safe_psql($db, q{SELECT turnstile.counter_decr('plain', 6)}),
		'10', "$label: counter_decr");
	like(query_result($target, $db, q{SELECT turnstile.counter_incr('plain', 1, 15)}),
		qr/ERROR:  counter "plain" is out of sync\nDETAIL:  Expected value 15, current value 10\./,
		"$label: counter_incr with expected");
	is($target->safe_psql($db, q{SELECT turnstile.counter_incr('plain', 1, 10)}),
		'11', "$label: counter_incr with the right expected value");
	is($target->safe_psql($db, q{
			SELECT applied, value, version FROM turnstile.counter_cas('set', 42, 100)}),
		't|100|2', "$label: counter_cas");
	is($target->safe_psql($db, q{SELECT turnstile.counter_set('set', 7)}),
		'7', "$label: counter_set");
	is($target->safe_psql($db, q{SELECT turnstile.counter_create('created', 5)}),
		'1000', "$label: counter_create of an existing counter");
	is($target->safe_psql($db, q{
			SELECT name, value, version, slots FROM turnstile.counter_info('set')}),
		'set|7|3|1', "$label: counter_info");
	is($target->safe_psql($db, q{
			SELECT turnstile.counter_drop('created'),
				   turnstile.counter_get('created') IS NULL}),
		't|t', "$label: counter_drop");
	is(query_result($target, $db, q{SET ROLE app; SELECT turnstile.counter_incr('plain')}),
		'12', "$label: app may increment");

	# hot increments from several backends still spread over the slots
	$target->safe_psql($db, q{
		CREATE TABLE hot_before AS
			SELECT slot, version FROM turnstile.counter_slot WHERE name = 'hot'});
	$target->pgbench('--no-vacuum --client=4 --jobs=2 --transactions=25', 0,
		[qr{processed: 100/100}], [qr{^$}], "$label: hot increments",
		{ "008_hot_$label" => q{SELECT turnstile.counter_incr('hot');} }, $db);
	is($target->safe_psql($db, q{SELECT turnstile.counter_get('hot')}),
		'200', "$label: the hot counter counts exactly");
	cmp_ok($target->safe_psql($db, q{
			SELECT count(*) FROM turnstile.counter_slot s JOIN hot_before b USING (slot)
			 WHERE s.name = 'hot' AND s.version > b.version}),
		'>', 1, "$label: hot increments landed on more than one slot");

	# turnstile.locks decodes the locks of an open transaction
	my $session = $target->background_psql($db);
	my $pid = $session->query_safe('SELECT pg_backend_pid()');
	$session->query_safe(q{
		BEGIN;
		SELECT turnstile.counter_incr('plain');
		SELECT turnstile.credential_invalidate(2, 'svc');
	});
	is($target->safe_psql($db, qq{
			SELECT object, counter, realm, user_id, mode, granted
			  FROM turnstile.locks WHERE pid = $pid ORDER BY object}),
		"counter|plain|||ExclusiveLock|t\ncredential||svc|2|ExclusiveLock|t",
		"$label: turnstile.locks names the counter and the user");
	$session->query_safe('ROLLBACK');
	$session->quit;
	is($target->safe_psql($db, 'SELECT count(*) FROM turnstile.locks'),
		'0', "$label: no turnstile lock left behind");

	# new realms get the next free id
	is($target->safe_psql($db, q{
			SELECT turnstile.realm_set('new', 'svc.login(bigint)');
			SELECT realm_id FROM turnstile.realm WHERE name = 'new';
			SELECT turnstile.realm_drop('new')}),
		"\n4\nt", "$label: realm_set and realm_drop");
}

# A query's output, or its error output (so that a failure shows the error).
sub query_result
{
	my ($target, $db, $sql) = @_;
	my ($ret, $out, $err) = $target->psql($db, $sql);
	return $ret == 0 ? $out : $err;
}

check_restored($node, 'dst_custom', 'pg_restore');
check_restored($node, 'dst_plain', 'plain dump');

#
# Another cluster.  Its roles come from pg_dumpall --roles-only before
# anything else, so they have other OIDs than in the first cluster; the
# realms must still belong to, and be granted to, the same roles.
#
my $other = PostgreSQL::Test::Cluster->new('other');
$other->init(extra => [ '-E', 'UTF8', '--no-locale' ]);
$other->start;
$node->command_ok([ 'pg_dumpall', '--roles-only', "--file=$dir/roles.sql" ],
	'pg_dumpall --roles-only');
# the bootstrap superuser exists already: that one error is expected
($ret, $stdout, $stderr) = $other->psql('postgres', slurp_file("$dir/roles.sql"),
	on_error_stop => 0);
like($stderr, qr/\Apsql:<stdin>:\d+: ERROR:  role "\Q$superuser\E" already exists\z/,
	'the roles are created in the other cluster');
foreach my $role ('svc_admin', 'app')
{
	my $oid_query = "SELECT oid FROM pg_roles WHERE rolname = '$role'";
	my $oid = $other->safe_psql('postgres', $oid_query);
	like($oid, qr/^\d+$/, "$role exists in the other cluster");
	isnt($oid, $node->safe_psql('postgres', $oid_query),
		"$role has another OID in the other cluster");
}
$other->command_ok([ 'createdb', 'restored' ], 'createdb restored in the other cluster');
$other->command_checks_all(
	[ 'pg_restore', '--exit-on-error', '--dbname=restored', "$dir/src.dump" ],
	0, [qr{^$}], [qr{^$}], 'pg_restore into the other cluster, without a message');
check_restored($other, 'restored', 'other cluster');

$other->stop;
$node->stop;
done_testing();
