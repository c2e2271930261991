# Killed sessions.  32 pgbench clients increment one plain and one hot
# counter while 16 more stampede on a few users' credentials, which keep
# getting invalidated, in two realms (the refresh in a background worker, and
# in the caller's transaction); meanwhile backends are terminated at random,
# over and over: client backends by Debian's pg_rage_terminator background
# worker, refresh workers by the test itself.  Afterwards:
#   - every counter equals, to the unit, the increments of the transactions
#     that committed; that includes every increment a client saw commit, and
#     nothing beyond what the clients attempted;
#   - no session is left hanging, no refresh worker is left running, and no
#     turnstile lock (nor the login service's own) is left held;
#   - no two logins of one user ever ran at once, and the cache counted
#     exactly the logins that the service committed;
#   - the next credential_get for every user succeeds, logs in once for each
#     user whose credential is not fresh and never for the others, and hands
#     out the credential the service issued last; a second round logs nobody
#     in.
#
# Which increments committed is exact: each transaction also writes a ledger
# row, which commits if and only if its increments do.  pgbench's
# per-transaction log (--log) tells which transactions a client saw commit; a
# client numbers its transactions in the variable n and runs them one after
# another, so a client that logged k lines saw transactions 1 .. k commit, and
# transaction k + 1 may have been in flight when it was killed or its run
# ended.  Such a transaction may have committed without the client hearing
# of it: a backend can be terminated after its commit record is written and
# before the client has read the reply.  So the counters are compared with
# the ledger for equality, and with what the clients saw only as bounds.
#
# pg_rage_terminator terminates each client backend (any backend with a
# client port) with a given chance once per interval.  It is switched on only
# once every pgbench client has connected, because pgbench gives up its whole
# run when a connection fails at start-up, and each run lasts a few seconds
# so that the load does not die out as its clients are killed.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run;
use Time::HiRes qw(time usleep);
use FindBin;
use lib $FindBin::RealBin;
use TurnstileTest;

my $rounds = 4;
my $round_seconds = 3;
my $counter_clients = 32;
my $stampede_clients = 16;
my $users = 4;				# per realm
my $login_seconds = 0.1;
my @realms = ('r1', 'r2');	# requires_new, required

my $node = PostgreSQL::Test::Cluster->new('killed');
$node->init(extra => [ '-E', 'UTF8', '--no-locale' ]);
# log_statement = all (the test default) would write every increment to the
# server log.  The terminator starts switched off (interval 0).
$node->append_conf('postgresql.conf', qq{
max_connections = 100
log_statement = none
shared_preload_libraries = 'pg_rage_terminator'
pg_rage_terminator.interval = 0
pg_rage_terminator.chance = 10
});
$node->start;

# The login service issues numbered tokens per realm and user, takes a while,
# and counts its attempts in a sequence per realm, which no rollback takes
# back.  It also locks the account's row in svc_account while it works, to
# the end of its transaction: a login that finds the row locked is a second
# login of the same account while the first one's transaction is still
# running, and is counted in svc_overlaps.  A row lock, not an advisory one:
# a transaction's advisory locks are released a moment after the others
# (its xid lock among them), so another session can already see the
# transaction as ended, and begin a login, while its advisory lock is still
# held; a row lock ends exactly when its transaction is seen to end.
#
# try_get is what a client that knows about requires_new does: when the
# refresh worker it waits for is terminated, it gets 57P01 (the worker's own
# termination message) or 57000 (the worker ended before it could answer),
# notes that and carries on, so that the stampede does not die out.  Any
# other error aborts the pgbench client, and fails the test below.
$node->safe_psql('postgres', qq{
	CREATE EXTENSION pg_turnstile;
} . ledger_sql() . qq{

	CREATE TABLE svc_token (
		realm	text	NOT NULL,
		user_id	bigint	NOT NULL,
		token	text	NOT NULL,
		n		integer NOT NULL,
		PRIMARY KEY (realm, user_id));
	CREATE SEQUENCE svc_attempts_r1;
	CREATE SEQUENCE svc_attempts_r2;
	CREATE SEQUENCE svc_overlaps;
	CREATE TABLE svc_account (
		realm	text	NOT NULL,
		user_id	bigint	NOT NULL,
		PRIMARY KEY (realm, user_id));
	INSERT INTO svc_account
		SELECT r, u FROM unnest(ARRAY['r1', 'r2']) r, generate_series(1, $users) u;
	CREATE FUNCTION svc_login(p_realm text, p_uid bigint) RETURNS text
	LANGUAGE plpgsql AS \$\$
	DECLARE
		issued text;
	BEGIN
		PERFORM nextval(('svc_attempts_' || p_realm)::regclass);
		BEGIN
			PERFORM FROM svc_account WHERE realm = p_realm AND user_id = p_uid
				FOR UPDATE NOWAIT;
		EXCEPTION WHEN lock_not_available THEN
			PERFORM nextval('svc_overlaps');
		END;
		PERFORM pg_sleep($login_seconds);
		INSERT INTO svc_token AS t VALUES (p_realm, p_uid, p_realm || '-' || p_uid || '-1', 1)
			ON CONFLICT (realm, user_id) DO UPDATE
			SET n = t.n + 1, token = p_realm || '-' || p_uid || '-' || (t.n + 1)
			RETURNING token INTO issued;
		RETURN issued;
	END \$\$;
	CREATE FUNCTION svc_login_r1(uid bigint) RETURNS text LANGUAGE sql
		AS \$\$ SELECT svc_login('r1', uid) \$\$;
	CREATE FUNCTION svc_login_r2(uid bigint) RETURNS text LANGUAGE sql
		AS \$\$ SELECT svc_login('r2', uid) \$\$;
	SELECT turnstile.realm_set('r1', 'svc_login_r1(bigint)', ttl => '1 hour');
	SELECT turnstile.realm_set('r2', 'svc_login_r2(bigint)', ttl => '1 hour',
							   propagation => 'required');

	CREATE TABLE caught (sqlstate text NOT NULL, message text NOT NULL);
	CREATE FUNCTION try_get(uid bigint, realm text) RETURNS text
	LANGUAGE plpgsql AS \$\$
	BEGIN
		RETURN turnstile.credential_get(uid, realm);
	EXCEPTION WHEN admin_shutdown OR operator_intervention THEN
		INSERT INTO caught VALUES (SQLSTATE, SQLERRM);
		RETURN NULL;
	END \$\$;
});

# the ledger's load (TurnstileTest.pm), each round a batch
my $counter_script = $node->basedir . '/006_counters.sql';
write_ledger_script($counter_script);

# One call in four invalidates a user's credential, so that the others
# keep finding it stale and queue behind a login.
my $stampede_script = $node->basedir . '/006_stampede.sql';
append_to_file($stampede_script, qq{
\\set uid random(1, $users)
\\set r random(1, 2)
\\set op random(1, 4)
\\if :op = 1
SELECT turnstile.credential_invalidate(:uid, 'r' || :r);
\\else
SELECT try_get(:uid, 'r' || :r);
\\endif
});

# pgbench in the background for one round, its clients named after the load.
sub start_load
{
	my ($name, $clients, $script, @options) = @_;
	my %load = (name => $name, out => '', err => '');
	local $ENV{PGAPPNAME} = $name;
	$load{run} = IPC::Run::start(
		[
			'pgbench', '--no-vacuum', "--client=$clients", '--jobs=2',
			"--time=$round_seconds", '--file', $script, @options,
			'--host', $node->host, '--port', $node->port, 'postgres'
		],
		'>', \$load{out}, '2>', \$load{err},
		IPC::Run::timeout($PostgreSQL::Test::Utils::timeout_default));
	return \%load;
}

# Switch pg_rage_terminator on or off.  Off means it has read the new
# setting: it logs "Nothing to do" on its next pass, and never kills again.
sub rage
{
	my ($interval) = @_;
	my $offset = -s $node->logfile;
	$node->append_conf('postgresql.conf', "pg_rage_terminator.interval = $interval");
	$node->reload;
	$node->wait_for_log(qr/Nothing to do/, $offset) if $interval == 0;
}

my (%ended, $worker_kills, $counter_aborts, $stampede_aborts);
$worker_kills = $counter_aborts = $stampede_aborts = 0;
my $loads_started = time;
foreach my $round (1 .. $rounds)
{
	my $prefix = $node->basedir . "/006_round$round";
	my $counters = start_load('counters', $counter_clients, $counter_script,
		'--log', "--log-prefix=$prefix", '--define', "batch=$round",
		'--define', 'n=0');
	my $stampede = start_load('stampede', $stampede_clients, $stampede_script);
	$node->poll_query_until('postgres', qq{
		SELECT count(*) = @{[$counter_clients + $stampede_clients]}
		  FROM pg_stat_activity
		 WHERE application_name IN ('counters', 'stampede') AND query <> ''})
	  or die "round $round: the clients did not all connect";

	# The terminator kills client backends; refresh workers have no client
	# port, so terminate one of those, if any runs, four times a second.  A
	# kill may hit this very session; then psql just fails.
	rage(1);
	my $until = time + $round_seconds;
	while (time < $until)
	{
		my ($ret, $killed) = $node->psql('postgres', q{
			SELECT count(*) FILTER (WHERE pg_terminate_backend(pid))
			  FROM (SELECT pid FROM pg_stat_activity
					 WHERE backend_type = 'pg_turnstile refresh'
					 ORDER BY random() LIMIT 1) w});
		$worker_kills += $killed if $ret == 0;
		usleep(250_000);
	}
	rage(0);

	foreach my $load ($counters, $stampede)
	{
		$load->{run}->finish;
		unlike($load->{err}, qr/\bERROR:/,
			"round $round, $load->{name}: no client got an error")
		  or diag $load->{err};
	}
	$counter_aborts += () = $counters->{err} =~ /client \d+ (?:script \d+ )?aborted/g;
	$stampede_aborts += () = $stampede->{err} =~ /client \d+ (?:script \d+ )?aborted/g;

	my $failed = count_pgbench_log($prefix, $round, $counter_clients, \%ended);
	is($failed, 0, "round $round: no transaction failed short of a lost connection");
}
my $rage_kills = () = slurp_file($node->logfile) =~ /Rage terminated connection/g;
my ($caught_57p01, $caught_57000) = split /\|/, $node->safe_psql('postgres', q{
	SELECT count(*) FILTER (WHERE sqlstate = '57P01'),
		   count(*) FILTER (WHERE sqlstate = '57000') FROM caught});
note sprintf('%d rounds in %.1f s: the terminator killed %d client backends '
	  . '(%d counter clients and %d stampede clients aborted), the test %d refresh workers; '
	  . 'stampede callers saw %d worker terminations and %d refreshes without an answer',
	$rounds, time - $loads_started, $rage_kills, $counter_aborts, $stampede_aborts,
	$worker_kills, $caught_57p01, $caught_57000);
cmp_ok($counter_aborts, '>', 0, 'counter clients were killed');
cmp_ok($worker_kills, '>', 0, 'refresh workers were killed');

# Nothing is left behind.  Killed backends take a moment to exit, so wait
# for every session but this one to be gone; then no lock may remain.
ok($node->poll_query_until('postgres', q{
		SELECT count(*) = 0 FROM pg_stat_activity
		 WHERE backend_type IN ('client backend', 'pg_turnstile refresh')
		   AND pid <> pg_backend_pid()}),
	'no session and no refresh worker left running');
is($node->safe_psql('postgres', 'SELECT count(*) FROM turnstile.locks'),
	'0', 'no turnstile lock left held');
is($node->safe_psql('postgres',
		q{SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'}),
	'0', 'no advisory lock of any kind left held');

# Counters: the ledger against what the clients saw, the counters against
# the ledger.
my (%acked, %maybe);
foreach my $rc (keys %ended)
{
	my ($round, $client) = split /:/, $rc;
	$acked{"$round:$client:$_"} = $client + 1 foreach 1 .. $ended{$rc};
	$maybe{"$round:$client:" . ($ended{$rc} + 1)} = $client + 1;
}
check_ledger($node, 'killed sessions', \%acked, \%maybe,
	q{SELECT batch || ':' || client || ':' || n, hot FROM ledger});

# Credentials.  Per realm and user: status (missing when nothing was ever
# stored), the logins the cache counted, and the service's count and last
# token.
my $keys_sql = qq{
	SELECT r || ':' || u, coalesce(s.status, 'missing'), coalesce(s.logins, 0),
		   coalesce(t.n, 0), coalesce(t.token, '')
	  FROM unnest(ARRAY['r1', 'r2']) r CROSS JOIN generate_series(1, $users) u
	  LEFT JOIN turnstile.credential_status s ON s.realm = r AND s.user_id = u
	  LEFT JOIN svc_token t ON t.realm = r AND t.user_id = u
	 ORDER BY 1};
my $attempts_sql = q{
	SELECT (SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM svc_attempts_r1)
		|| '|' || (SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM svc_attempts_r2)};

sub key_state
{
	my %state;
	foreach my $row (split /\n/, $node->safe_psql('postgres', $keys_sql))
	{
		my ($key, $status, $logins, $n, $token) = split /\|/, $row;
		$state{$key} = { status => $status, logins => $logins, n => $n, token => $token };
	}
	return %state;
}

my %after_chaos = key_state();
my %attempts;
@attempts{@realms} = split /\|/, $node->safe_psql('postgres', $attempts_sql);
note 'after the kills: '
  . join(', ', map { "$_ $after_chaos{$_}{status} ($after_chaos{$_}{n} logins)" }
	  sort keys %after_chaos)
  . "; login attempts: r1 $attempts{r1}, r2 $attempts{r2}";
is($node->safe_psql('postgres', 'SELECT is_called FROM svc_overlaps'), 'f',
	'no two logins of one user ever ran at once');
is(join(',', grep { $after_chaos{$_}{logins} != $after_chaos{$_}{n} } sort keys %after_chaos),
	'', 'the cache counted exactly the logins the service committed');

# Round 1: every user, one call each.
my %got;
foreach my $key (sort keys %after_chaos)
{
	my ($realm, $uid) = split /:/, $key;
	my ($ret, $out, $err) = $node->psql('postgres',
		"SELECT turnstile.credential_get($uid, '$realm')");
	is($ret, 0, "$key: credential_get succeeds after the kills") or diag $err;
	$got{$key} = $out;
}
my %after_round1 = key_state();
my %attempts1;
@attempts1{@realms} = split /\|/, $node->safe_psql('postgres', $attempts_sql);
foreach my $key (sort keys %after_chaos)
{
	my $needed = $after_chaos{$key}{status} eq 'fresh' ? 0 : 1;
	is($after_round1{$key}{n} - $after_chaos{$key}{n}, $needed,
		"$key: $needed login(s) for a credential that was $after_chaos{$key}{status}");
	is($got{$key}, $after_round1{$key}{token},
		"$key: credential_get returns the token the service issued last");
	is($after_round1{$key}{status}, 'fresh', "$key: fresh now");
}
foreach my $realm (@realms)
{
	my $needed = grep { /^$realm:/ && $after_chaos{$_}{status} ne 'fresh' } keys %after_chaos;
	is($attempts1{$realm} - $attempts{$realm}, $needed,
		"$realm: the service saw $needed login attempt(s), one per stale user");
}

# Round 2: nobody logs in again, everybody gets the same credential.
foreach my $key (sort keys %after_chaos)
{
	my ($realm, $uid) = split /:/, $key;
	is($node->safe_psql('postgres', "SELECT turnstile.credential_get($uid, '$realm')"),
		$got{$key}, "$key: the second round returns the same credential");
}
is($node->safe_psql('postgres', $attempts_sql), "$attempts1{r1}|$attempts1{r2}",
	'the second round logs nobody in');

$node->stop;
done_testing();
