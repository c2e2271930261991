# propagation = 'requires_new': the refresh runs in a background worker while
# the caller waits.  Whatever happens to either side, no worker is left
# running, the user's lock is free afterwards, nothing half-written remains,
# and the next caller succeeds:
#   - the caller is terminated while its refresh runs;
#   - the caller is cancelled while its refresh runs;
#   - the worker is terminated while the caller waits;
#   - the extension's owner cannot log in: the worker runs all the same;
#   - more refreshes than worker slots: they wait for a slot and succeed;
#   - no slot ever frees: lock_timeout and statement_timeout end the wait.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('worker');
$node->init(extra => [ '-E', 'UTF8', '--no-locale' ]);
$node->start;

# A login service that takes as long as svc_delay says, and counts its
# attempts in a sequence (which no rollback takes back).
$node->safe_psql('postgres', q{
	CREATE EXTENSION pg_turnstile;
	CREATE SEQUENCE attempts;
	CREATE TABLE svc_delay (seconds float8 NOT NULL);
	INSERT INTO svc_delay VALUES (60);
	CREATE FUNCTION svc_login(uid bigint) RETURNS text LANGUAGE plpgsql AS $$
	BEGIN
		PERFORM nextval('attempts');
		PERFORM pg_sleep((SELECT seconds FROM svc_delay));
		RETURN 'tok-' || uid || '-' || currval('attempts');
	END $$;
	SELECT turnstile.realm_set('w', 'svc_login(bigint)');
});

my $refreshing = q{(SELECT count(*) FROM pg_stat_activity
				    WHERE backend_type = 'pg_turnstile refresh')};

# Start a caller whose refresh will hang in the slow login, and wait until
# its worker is inside the login's pg_sleep (not merely started, so that what
# the tests interrupt is always the login).  Returns the session and the
# caller's pid.
sub start_stuck_caller
{
	my ($user_id) = @_;
	my $caller = $node->background_psql('postgres', on_error_stop => 0);
	my $pid = $caller->query_safe('SELECT pg_backend_pid()');
	$caller->query_until(qr/started/, qq{
		\\echo started
		SELECT turnstile.credential_get($user_id, 'w');
	});
	$node->poll_query_until('postgres', q{
			SELECT count(*) = 1 FROM pg_stat_activity
			 WHERE backend_type = 'pg_turnstile refresh'
			   AND wait_event = 'PgSleep'})
	  or die 'the refresh worker did not reach the login';
	return ($caller, $pid);
}

# After an interruption: no worker, no lock, nothing stored for the user,
# and a new caller gets a credential.
sub check_clean_after
{
	my ($user_id, $what) = @_;
	ok($node->poll_query_until('postgres', "SELECT $refreshing = 0"),
		"$what: no refresh worker left running");
	ok($node->poll_query_until('postgres',
			'SELECT count(*) = 0 FROM turnstile.locks'),
		"$what: the user's lock is free");
	is($node->safe_psql('postgres', qq{
			SELECT count(*) FROM turnstile.credential_status
			 WHERE realm = 'w' AND user_id = $user_id AND status <> 'missing'}),
		'0', "$what: nothing half-written");
	$node->safe_psql('postgres', 'UPDATE svc_delay SET seconds = 0');
	like($node->safe_psql('postgres', "SELECT turnstile.credential_get($user_id, 'w')"),
		qr/^tok-$user_id-/, "$what: the next caller succeeds");
	$node->safe_psql('postgres', 'UPDATE svc_delay SET seconds = 60');
}

# 1. the caller is terminated
my ($caller, $pid) = start_stuck_caller(1);
$node->safe_psql('postgres', "SELECT pg_terminate_backend($pid)");
# A non-interactive psql ends by itself when it loses its connection, so do
# not send it \q (the write could meet a closed pipe): wait for it to end.
$caller->{run}->finish;
like($caller->{stderr}, qr/FATAL:  terminating connection due to administrator command/,
	'caller terminated: its session ends');
check_clean_after(1, 'caller terminated');

# 2. the caller is cancelled
($caller, $pid) = start_stuck_caller(2);
$node->safe_psql('postgres', "SELECT pg_cancel_backend($pid)");
$caller->quit;
like($caller->{stderr}, qr/canceling statement due to user request/,
	'caller cancelled: it gets the cancel');
check_clean_after(2, 'caller cancelled');

# 3. the worker is terminated while its caller waits
($caller, $pid) = start_stuck_caller(3);
$node->safe_psql('postgres', qq{
	SELECT pg_terminate_backend(pid) FROM pg_stat_activity
	 WHERE backend_type = 'pg_turnstile refresh'});
$caller->quit;
like($caller->{stderr},
	qr/ERROR:  terminating background worker "pg_turnstile refresh" due to administrator command\n.*\nlogin function public.svc_login\(bigint\) of realm "w", for user 3/s,
	'worker terminated: the caller gets a clear error');
check_clean_after(3, 'worker terminated');

# An extension owned by a role that cannot log in: its refresh workers
# connect all the same.
$node->safe_psql('postgres', q{
	CREATE ROLE nologin_owner NOLOGIN SUPERUSER;
	CREATE DATABASE nologin OWNER nologin_owner;
});
$node->safe_psql('nologin', q{
	SET ROLE nologin_owner;
	CREATE EXTENSION pg_turnstile;
	CREATE FUNCTION quick_login(uid bigint) RETURNS text LANGUAGE sql AS $$ SELECT 'quick-' || uid $$;
	SELECT turnstile.realm_set('q', 'quick_login(bigint)');
});
is($node->safe_psql('nologin', "SELECT turnstile.credential_get(1, 'q')"), 'quick-1',
	'an extension owned by a role that cannot log in: its refresh worker runs');

# 4. more refreshes than worker slots: they wait for a slot, and all succeed.
# max_worker_processes = 2, of which the logical replication launcher takes
# one: eight callers refresh eight users at once, with a 0.2 s login.
$node->append_conf('postgresql.conf', "max_worker_processes = 2\n");
$node->restart;
$node->safe_psql('postgres', 'UPDATE svc_delay SET seconds = 0.2');
my $attempts_before = $node->safe_psql('postgres', 'SELECT last_value FROM attempts');
my @callers;
foreach my $user_id (11 .. 18)
{
	my %caller = (in => "SELECT turnstile.credential_get($user_id, 'w');\n",
		out => '', err => '', user_id => $user_id);
	$caller{handle} = IPC::Run::start(
		[ 'psql', '-X', '-A', '-t', '-d', $node->connstr('postgres') ],
		'<', \$caller{in}, '>', \$caller{out}, '2>', \$caller{err});
	push @callers, \%caller;
}
foreach my $caller (@callers)
{
	$caller->{handle}->finish;
	like($caller->{out}, qr/^tok-$caller->{user_id}-\d+$/m,
		"one worker slot, eight refreshes: user $caller->{user_id} got a credential");
	is($caller->{err}, '', "one worker slot, eight refreshes: user $caller->{user_id} saw no error");
}
is($node->safe_psql('postgres', 'SELECT last_value FROM attempts') - $attempts_before,
	8, 'one worker slot, eight refreshes: exactly eight logins');

# 4b. a login that needs another user's credential, in the one worker slot:
# the nested refresh finds no slot free, and rather than wait for one (which
# only its own caller holds) the worker refreshes that user itself.  Before,
# it waited until the caller's statement_timeout.
$node->safe_psql('postgres', q{
	UPDATE svc_delay SET seconds = 0;
	CREATE FUNCTION outer_login(uid bigint) RETURNS text LANGUAGE sql AS $$
		SELECT 'outer-' || uid || '-' || turnstile.credential_get(100 + uid, 'w')
	$$;
	SELECT turnstile.realm_set('outer', 'outer_login(bigint)');
});
$attempts_before = $node->safe_psql('postgres', 'SELECT last_value FROM attempts');
like($node->safe_psql('postgres', "SET statement_timeout = '30s'; SELECT turnstile.credential_get(1, 'outer')"),
	qr/^outer-1-tok-101-\d+$/, 'one worker slot, a nested refresh: done by the worker itself');
is($node->safe_psql('postgres', 'SELECT last_value FROM attempts') - $attempts_before,
	1, 'one worker slot, a nested refresh: one login for the inner user');
is($node->safe_psql('postgres', q{
		SELECT status FROM turnstile.credential_status WHERE realm = 'w' AND user_id = 101}),
	'fresh', 'one worker slot, a nested refresh: the inner credential committed with the outer');

# 5. no slot ever frees (max_worker_processes = 0): lock_timeout and
# statement_timeout bound the wait, and their errors name the user and realm
$node->append_conf('postgresql.conf',
	"max_worker_processes = 0\nmax_logical_replication_workers = 0\n");
$node->restart;
$node->safe_psql('postgres', 'UPDATE svc_delay SET seconds = 0');
my ($ret, $stdout, $stderr) = $node->psql('postgres',
	"\\set VERBOSITY verbose\nSET lock_timeout = '300ms';\nSELECT turnstile.credential_get(4, 'w');");
like($stderr, qr/ERROR:  55P03: could not start the refresh of user 4 in realm "w" within lock_timeout/,
	'no worker slot: lock_timeout gives 55P03 naming the user and realm');
($ret, $stdout, $stderr) = $node->psql('postgres',
	"\\set VERBOSITY verbose\nSET statement_timeout = '300ms';\nSELECT turnstile.credential_get(4, 'w');");
like($stderr, qr/ERROR:  57014: canceling statement due to statement timeout/,
	'no worker slot: statement_timeout gives 57014');
like($stderr, qr/CONTEXT:  waiting for a background worker to refresh user 4 in realm "w"/,
	'no worker slot: the cancel names the user and realm');
is($node->safe_psql('postgres', 'SELECT count(*) FROM turnstile.locks'), '0',
	'no worker slot: the lock is free');

$node->stop;
done_testing();
