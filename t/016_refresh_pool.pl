# The refresh pool: with pg_turnstile in shared_preload_libraries, refreshes
# in a transaction of their own run in long-lived workers fed by a queue in
# shared memory.  On a server with the default max_worker_processes and a pool
# of one worker (turnstile.refresh_workers = 1):
#   - the worker shows in pg_stat_activity with a backend_type of its own and
#     says what it refreshes; turnstile.refresh_pool shows it and the queue;
#   - it serves refresh after refresh without a new process;
#   - a worker killed in the middle of a login: its caller gets the error,
#     nothing half-written remains, the lock is free, and a new worker takes
#     over for the next caller;
#   - a caller terminated while its refresh runs: the worker is stopped and
#     gone before the user's lock is free, so no second login starts beside it;
#   - a deadlock between a caller and the pool worker it waits for is found;
#   - a login that refreshes another user of a 'requires_new' realm, from the
#     pool's only worker, does not wait for the pool (which has no one left);
#   - a second database: the idle worker of the first leaves to make room;
#   - an idle worker leaves after turnstile.refresh_worker_idle_time;
#   - the extension's owner may be a role that cannot log in.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('pool');
$node->init(extra => [ '-E', 'UTF8', '--no-locale' ]);
$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'pg_turnstile'
turnstile.refresh_workers = 1
});
$node->start;

# A login service that takes as long as svc_delay says, and counts its
# attempts in a sequence (which no rollback takes back).
my $service = q{
	CREATE SEQUENCE attempts;
	CREATE TABLE svc_delay (seconds float8 NOT NULL);
	INSERT INTO svc_delay VALUES (0);
	CREATE FUNCTION svc_login(uid bigint) RETURNS text LANGUAGE plpgsql AS $$
	BEGIN
		PERFORM nextval('attempts');
		PERFORM pg_sleep((SELECT seconds FROM svc_delay));
		RETURN 'tok-' || uid || '-' || currval('attempts');
	END $$;
	-- a login that first needs the credential of user 1000 + uid
	CREATE FUNCTION svc_login_nested(uid bigint) RETURNS text LANGUAGE sql AS $$
		SELECT 'outer-' || uid || '-' || turnstile.credential_get(1000 + uid, 'w')
	$$;
};
$node->safe_psql('postgres', qq{
	CREATE EXTENSION pg_turnstile;
	$service
	SELECT turnstile.realm_set('w', 'svc_login(bigint)');
	SELECT turnstile.realm_set('nested', 'svc_login_nested(bigint)');
});

my $pool_workers = q{(SELECT count(*) FROM pg_stat_activity
					  WHERE backend_type = 'pg_turnstile refresh pool')};

sub pool_pid
{
	return $node->safe_psql('postgres', q{
		SELECT pid FROM pg_stat_activity WHERE backend_type = 'pg_turnstile refresh pool'});
}

# 1. served by the pool: one worker, refresh after refresh
like($node->safe_psql('postgres', "SELECT turnstile.credential_get(1, 'w')"),
	qr/^tok-1-\d+$/, 'a refresh through the pool');
my $pid = pool_pid();
like($pid, qr/^\d+$/, 'one pool worker runs, with a backend_type of its own');
is($node->safe_psql('postgres', q{SELECT state FROM turnstile.refresh_pool}),
	'idle', 'turnstile.refresh_pool shows it idle');
$node->safe_psql('postgres', "SELECT turnstile.credential_get(u, 'w') FROM generate_series(2, 21) u");
is(pool_pid(), $pid, 'twenty more refreshes, by the same worker process');
is($node->safe_psql('postgres', 'SELECT last_value FROM attempts'), '21', 'one login each');

# 2. what it does, and the queue behind it
$node->safe_psql('postgres', 'UPDATE svc_delay SET seconds = 60');
my $first = $node->background_psql('postgres', on_error_stop => 0);
$first->query_until(qr/started/, qq{
	\\echo started
	SELECT turnstile.credential_get(31, 'w');
});
$node->poll_query_until('postgres', qq{
	SELECT count(*) = 1 FROM pg_stat_activity
	 WHERE backend_type = 'pg_turnstile refresh pool' AND wait_event = 'PgSleep'})
  or die 'the pool worker did not reach the login';
is($node->safe_psql('postgres', q{
		SELECT query FROM pg_stat_activity WHERE backend_type = 'pg_turnstile refresh pool'}),
	'refresh of user 31 in realm "w"', 'pg_stat_activity says what the worker refreshes');
my $second = $node->background_psql('postgres', on_error_stop => 0);
$second->query_until(qr/started/, qq{
	\\echo started
	SELECT turnstile.credential_get(32, 'w');
});
ok($node->poll_query_until('postgres', q{
		SELECT string_agg(state || ':' || user_id || ':' || realm, ',' ORDER BY state)
		  FROM turnstile.refresh_pool},
		'queued:32:w,refreshing:31:w'),
	'turnstile.refresh_pool shows the refresh under way and the one queued behind it');

# 3. the worker is killed in the middle of the login (the login under way
# sleeps on; the one queued behind it will not)
$node->safe_psql('postgres', 'UPDATE svc_delay SET seconds = 0');
$node->safe_psql('postgres', "SELECT pg_terminate_backend($pid)");
$first->quit;
like($first->{stderr}, qr/terminating background worker "pg_turnstile refresh pool" due to administrator command/,
	'worker killed: its caller gets the error');
$second->quit;
like($second->{stdout}, qr/tok-32-\d+/, 'worker killed: a new worker serves the refresh queued behind');
isnt(pool_pid(), $pid, 'worker killed: the new worker is another process');
is($node->safe_psql('postgres', q{
		SELECT count(*) FROM turnstile.credential_status WHERE user_id = 31 AND status <> 'missing'}),
	'0', 'worker killed: nothing half-written');
is($node->safe_psql('postgres', 'SELECT count(*) FROM turnstile.locks'), '0',
	'worker killed: no lock left');
like($node->safe_psql('postgres', "SELECT turnstile.credential_get(31, 'w')"),
	qr/^tok-31-\d+$/, 'worker killed: the next caller succeeds');

# 4. the caller is terminated while its refresh runs
$node->safe_psql('postgres', 'UPDATE svc_delay SET seconds = 60');
my $attempts = $node->safe_psql('postgres', 'SELECT last_value FROM attempts');
$first = $node->background_psql('postgres', on_error_stop => 0);
my $caller = $first->query_safe('SELECT pg_backend_pid()');
$first->query_until(qr/started/, qq{
	\\echo started
	SELECT turnstile.credential_get(41, 'w');
});
$node->poll_query_until('postgres', qq{
	SELECT count(*) = 1 FROM pg_stat_activity
	 WHERE backend_type = 'pg_turnstile refresh pool' AND wait_event = 'PgSleep'})
  or die 'the pool worker did not reach the login';
$pid = pool_pid();
$node->safe_psql('postgres', "SELECT pg_terminate_backend($caller)");
$first->{run}->finish;
# the lock goes with the caller, and only after its worker is gone
ok($node->poll_query_until('postgres', 'SELECT count(*) = 0 FROM turnstile.locks'),
	'caller terminated: the lock is free');
is($node->safe_psql('postgres', "SELECT count(*) FROM pg_stat_activity WHERE pid = $pid"),
	'0', 'caller terminated: its worker was gone before the lock was');
is($node->safe_psql('postgres', 'SELECT last_value FROM attempts') - $attempts, 1,
	'caller terminated: one login attempt, not a second one beside it');
$node->safe_psql('postgres', 'UPDATE svc_delay SET seconds = 0');
like($node->safe_psql('postgres', "SELECT turnstile.credential_get(41, 'w')"),
	qr/^tok-41-\d+$/, 'caller terminated: the next caller succeeds');

# 5. a login that needs another user's credential, from the only pool worker
like($node->safe_psql('postgres', "SELECT turnstile.credential_get(7, 'nested')"),
	qr/^outer-7-tok-1007-\d+$/, 'a nested refresh from the pool worker does not wait for the pool');

# A login that needs a row the caller's transaction has locked: the pool
# worker waits for the caller, the caller for the worker.  The caller sees
# it and raises 40P01; the worker is stopped, and the pool serves on.
$node->safe_psql('postgres', q{
	CREATE TABLE account (user_id bigint PRIMARY KEY, logins integer NOT NULL);
	INSERT INTO account VALUES (9, 0);
	CREATE FUNCTION counting_login(uid bigint) RETURNS text LANGUAGE plpgsql AS $$
	BEGIN
		UPDATE account SET logins = logins + 1 WHERE user_id = uid;
		RETURN 'tok-' || uid;
	END $$;
	SELECT turnstile.realm_set('locked', 'counting_login(bigint)');
});
my ($ret, $stdout, $stderr) = $node->psql('postgres', q{
	\set VERBOSITY verbose
	SET deadlock_timeout = '100ms';
	BEGIN;
	UPDATE account SET logins = 100 WHERE user_id = 9;
	SELECT turnstile.credential_get(9, 'locked');
	ROLLBACK;
});
like($stderr, qr/ERROR:  40P01: deadlock detected while refreshing user 9 in realm "locked"/,
	'a deadlock between the caller and its pool worker is detected');
is($node->safe_psql('postgres', "SELECT turnstile.credential_get(9, 'locked')"), 'tok-9',
	'after the deadlock, the pool serves the same user');

# 5b. what a login leaves in its session stays out of the next request:
# a setting, a session-level advisory lock, a temporary table; and a caller
# in a security-restricted operation (CREATE INDEX evaluating credential_get)
# does not leave the worker restricted.  (The worker resets its session after
# it has answered, hence the polls.)
$node->safe_psql('postgres', q{
	CREATE TABLE served_by (uid bigint, backend_type text, pid integer);
	CREATE FUNCTION leaky_login(uid bigint) RETURNS text LANGUAGE plpgsql AS $$
	BEGIN
		INSERT INTO served_by SELECT uid, backend_type, pid FROM pg_stat_activity
		 WHERE pid = pg_backend_pid();
		PERFORM set_config('turnstile.isolation', 'serializable', false);
		PERFORM pg_advisory_lock(4242);
		CREATE TEMP TABLE IF NOT EXISTS scratch (x int);
		RETURN 'leaky-' || uid;
	END $$;
	SELECT turnstile.realm_set('leaky', 'leaky_login(bigint)');
});
# (the pool's worker, idle, after the deadlock above stopped the last one)
like($node->safe_psql('postgres', "SELECT turnstile.credential_get(21, 'w')"),
	qr/^tok-21-\d+$/, 'the pool serves again');
ok($node->poll_query_until('postgres', q{SELECT state = 'idle' FROM turnstile.refresh_pool}),
	'its worker is idle');
$pid = pool_pid();
is($node->safe_psql('postgres', "SELECT turnstile.credential_get(1, 'leaky')"), 'leaky-1',
	'a login that changes a setting, takes an advisory lock and makes a temporary table');
is($node->safe_psql('postgres', 'SELECT backend_type, pid FROM served_by WHERE uid = 1'),
	"pg_turnstile refresh pool|$pid", 'served by the pool worker');
# (the worker resets its session after answering, before it takes the next
# request: once the next one is answered, the reset is done)
like($node->safe_psql('postgres', "SELECT turnstile.credential_get(22, 'w')"),
	qr/^tok-22-\d+$/, 'the next refresh does not run under the login\'s turnstile.isolation = serializable');
is($node->safe_psql('postgres', q{
		SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid = 4242}),
	'0', 'the pool worker does not keep the login\'s advisory lock');
is($node->safe_psql('postgres', q{SELECT count(*) FROM pg_class WHERE relname = 'scratch'}),
	'0', 'nor its temporary table');
is(pool_pid(), $pid, 'the same worker serves on');
$node->safe_psql('postgres', q{
	CREATE FUNCTION cred_of(uid bigint) RETURNS text IMMUTABLE LANGUAGE sql
		AS $$ SELECT turnstile.credential_get(uid, 'w') $$;
	CREATE TABLE indexed (id bigint);
	INSERT INTO indexed VALUES (31);
	CREATE INDEX ON indexed ((cred_of(id)));
});
is($node->safe_psql('postgres', "SELECT turnstile.credential_get(2, 'leaky')"), 'leaky-2',
	'after serving a caller inside CREATE INDEX the worker is not restricted: its next login makes a temporary table');
is($node->safe_psql('postgres', 'SELECT count(DISTINCT pid) || pg_catalog.max(backend_type) FROM served_by'),
	'1pg_turnstile refresh pool', 'the same pool worker served both');
is(pool_pid(), $pid, 'and serves on');
$node->safe_psql('postgres', 'DROP TABLE indexed; DROP FUNCTION cred_of(bigint)');

# 5c. a login that fails: its caller gets the error, and the pool worker
# that answered is not stopped for it (the caller used to terminate a worker
# that had not yet marked the entry done, a moment after answering, and
# that might be serving the next caller's refresh by then)
$node->safe_psql('postgres', q{
	CREATE FUNCTION failing_login(uid bigint) RETURNS text LANGUAGE plpgsql AS $$
	BEGIN
		RAISE EXCEPTION 'the service says no to %', uid;
	END $$;
	SELECT turnstile.realm_set('failing', 'failing_login(bigint)');
});
$pid = pool_pid();
foreach my $uid (1 .. 5)
{
	my ($ret, $stdout, $stderr) =
	  $node->psql('postgres', "SELECT turnstile.credential_get($uid, 'failing')");
	like($stderr, qr/the service says no to $uid/, "a failed login ($uid): its caller gets the error");
}
is(pool_pid(), $pid, 'the pool worker that answered the five failures still serves');

# 6. a second database: the idle worker of the first leaves to make room
$node->safe_psql('postgres', 'CREATE DATABASE other');
$node->safe_psql('other', qq{
	CREATE EXTENSION pg_turnstile;
	$service
	SELECT turnstile.realm_set('w', 'svc_login(bigint)');
});
like($node->safe_psql('other', "SELECT turnstile.credential_get(1, 'w')"),
	qr/^tok-1-1$/, 'another database: its refresh is served');
ok($node->poll_query_until('postgres', q{
		SELECT string_agg(datname, ',') FROM pg_stat_activity
		 WHERE backend_type = 'pg_turnstile refresh pool'}, 'other'),
	'another database: the one pool worker now serves it');
like($node->safe_psql('postgres', "SELECT turnstile.credential_get(51, 'w')"),
	qr/^tok-51-\d+$/, 'and back: the first database is served again');

# 7. an idle worker leaves after turnstile.refresh_worker_idle_time
$node->append_conf('postgresql.conf', "turnstile.refresh_worker_idle_time = 1\n");
$node->reload;
$node->safe_psql('postgres', "SELECT turnstile.credential_get(61, 'w')");
ok($node->poll_query_until('postgres', "SELECT $pool_workers = 0"),
	'an idle worker leaves after turnstile.refresh_worker_idle_time');
is($node->safe_psql('postgres', 'SELECT count(*) FROM turnstile.refresh_pool'), '0',
	'turnstile.refresh_pool is empty then');

# 8. an owner that cannot log in
$node->safe_psql('postgres', q{
	CREATE ROLE nologin_owner NOLOGIN SUPERUSER;
	CREATE DATABASE nologin OWNER nologin_owner;
});
$node->safe_psql('nologin', qq{
	SET ROLE nologin_owner;
	CREATE EXTENSION pg_turnstile;
	$service
	SELECT turnstile.realm_set('w', 'svc_login(bigint)');
});
like($node->safe_psql('nologin', "SELECT turnstile.credential_get(1, 'w')"),
	qr/^tok-1-1$/, 'an extension owned by a role that cannot log in: the pool refreshes');

$node->stop;
my $log = slurp_file($node->logfile);
unlike($log, qr/terminated by signal/, 'no process crashed');
done_testing();
