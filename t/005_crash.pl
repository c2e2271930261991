# Crash recovery.  Real clients increment one plain and one hot counter
# under pgbench while the server goes down hard, three times:
#   1. an immediate shutdown in the middle of the load;
#   2. kill -9 of one backend in the middle of a transaction (it holds a
#      counter's lock), after which the postmaster kills every other backend
#      and recovers on its own;
#   3. an immediate shutdown right after a load that ended normally, so that
#      no increment is in flight.
# After each restart every counter lies between the sum of the increments the
# clients saw commit (acknowledged) and the sum of those they attempted (at
# most one transaction per client is in flight), equals the acknowledged sum
# exactly in case 3, and equals, to the unit, what the committed transactions
# did.  Cached credentials and realms come back unchanged, and credential_get
# returns the same credentials as before without logging in again.
#
# Each transaction increments both counters and writes a ledger row in one
# transaction, with COMMIT, or ROLLBACK for every fifth: an increment is
# committed if and only if its ledger row is.  pgbench writes one line to its
# per-transaction log (--log) when the client has seen the transaction end,
# and a client runs its transactions one after another, numbering them in the
# variable n; so a client that logged k lines saw its transactions 1 .. k end,
# and may have had transaction k + 1 in flight when the server went away.  The
# ledger must hold every acknowledged transaction (none lost), no other
# transaction than those and the in-flight ones (none invented, none rolled
# back resurrected), and the counters must match it exactly.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run;
use FindBin;
use lib $FindBin::RealBin;
use TurnstileTest;

my $clients = 8;

my $node = PostgreSQL::Test::Cluster->new('crash');
$node->init(extra => [ '-E', 'UTF8', '--no-locale' ]);
# log_statement = all (the test default) would write every increment to the
# server log.  restart_after_crash is on by default; say so, case 2 needs it.
$node->append_conf('postgresql.conf', qq{
max_connections = 40
log_statement = none
restart_after_crash = on
});
$node->start;

# Two realms: the default propagation with a plain SQL login, and
# 'required' with a validate function and a refresh-ahead window.  Users 1-4
# have fresh credentials, user 5 an invalidated one, user 6 one set from
# outside.
$node->safe_psql('postgres', q{
	CREATE EXTENSION pg_turnstile;
} . ledger_sql() . q{

	CREATE SEQUENCE svc_logins;
	CREATE FUNCTION svc_login(uid bigint) RETURNS text LANGUAGE sql
		AS $$ SELECT 'tok-' || uid || '-' || nextval('svc_logins') $$;
	CREATE FUNCTION svc_validate(uid bigint, credential text) RETURNS boolean
		LANGUAGE sql AS $$ SELECT credential LIKE 'tok-' || uid || '-%' $$;
	SELECT turnstile.realm_set('rn', 'svc_login(bigint)', ttl => '1 hour');
	SELECT turnstile.realm_set('rq', 'svc_login(bigint)', 'svc_validate(bigint,text)',
							   ttl => '1 hour', refresh_ahead => '1 minute',
							   retry_after => '5 seconds', propagation => 'required');
	SELECT turnstile.credential_get(u, r)
	  FROM generate_series(1, 5) u, unnest(ARRAY['rn', 'rq']) r;
	SELECT turnstile.credential_invalidate(5, r) FROM unnest(ARRAY['rn', 'rq']) r;
	SELECT turnstile.credential_set(6, 'set-6-' || r, r) FROM unnest(ARRAY['rn', 'rq']) r;
});

my $realms_sql = 'SELECT * FROM turnstile.realm ORDER BY realm_id';
my $status_sql = q{
	SELECT realm, user_id, status, issued_at, validated_at, expires_at,
		   logins, validations, failures, last_error, blocked_until
	  FROM turnstile.credential_status ORDER BY 1, 2};
my $tokens_sql = q{
	SELECT r, u, turnstile.credential_get(u, r)
	  FROM unnest(ARRAY['rn', 'rq']) r, unnest(ARRAY[1, 2, 3, 4, 6]) u
	 ORDER BY 1, 2};

my $realms_before = $node->safe_psql('postgres', $realms_sql);
my $status_before = $node->safe_psql('postgres', $status_sql);
my $tokens_before = $node->safe_psql('postgres', $tokens_sql);
is($node->safe_psql('postgres', $status_sql), $status_before,
	'credential_get of fresh credentials changes nothing');
is($node->safe_psql('postgres', q{
		SELECT string_agg(status, ',' ORDER BY realm, user_id)
		  FROM turnstile.credential_status}),
	'fresh,fresh,fresh,fresh,invalidated,fresh,fresh,fresh,fresh,fresh,invalidated,fresh',
	'the credentials to keep are in place');

# The load: the ledger's (TurnstileTest.pm), each phase a batch; every fifth
# transaction of a client rolls back.
my $script = $node->basedir . '/005_increments.sql';
write_ledger_script($script, 5);

sub commits { return $_[0] % 5 != 0; }

# What the clients saw, per "phase:client": the number of transactions
# that ended, and whether one more may have been in flight.
my (%ended, %open);

# pgbench in the background, for the given number of seconds at most.
sub start_load
{
	my ($phase, $seconds) = @_;
	my %load = (phase => $phase, prefix => $node->basedir . "/005_phase$phase",
		out => '', err => '');
	$load{run} = IPC::Run::start(
		[
			'pgbench', '--no-vacuum', "--client=$clients", '--jobs=2',
			"--time=$seconds", '--log', "--log-prefix=$load{prefix}",
			'--define', "batch=$phase", '--define', 'n=0',
			'--file', $script,
			'--host', $node->host, '--port', $node->port, 'postgres'
		],
		'>', \$load{out}, '2>', \$load{err},
		IPC::Run::timeout($PostgreSQL::Test::Utils::timeout_default));
	return \%load;
}

# Read pgbench's per-transaction logs: "client_id transaction_no time
# script_no time_epoch time_us", one line per transaction that ended, in
# order per client (a client belongs to one thread, and each thread has its
# own file).  A time that is not a number would mean a transaction that
# failed without losing the connection; there must be none.
sub read_logs
{
	my ($load, $in_flight) = @_;
	my $phase = $load->{phase};
	my $failed = count_pgbench_log($load->{prefix}, $phase, $clients, \%ended);
	$open{"$phase:$_"} = $in_flight foreach 0 .. $clients - 1;
	is($failed, 0, "phase $phase: no transaction failed short of a lost connection");
}

# A crash cut pgbench's clients off: every client must have lost its
# connection, and nothing else may have gone wrong.
sub check_cut_off
{
	my ($load, $what) = @_;
	my %aborted;
	$aborted{$1} = 1 while $load->{err} =~ /client (\d+) (?:script \d+ )?aborted/g;
	is(scalar(keys %aborted), $clients, "$what: every client lost its connection")
	  or diag $load->{err};
	unlike($load->{err}, qr/\bERROR:/, "$what: no client got an error");
}

# The ledger against what the clients saw, and the counters against both.
sub check_counters
{
	my ($what) = @_;
	my (%acked, %maybe);
	foreach my $pc (sort keys %ended)
	{
		my ($phase, $client) = split /:/, $pc;
		my $k = $ended{$pc};
		foreach my $n (1 .. $k)
		{
			$acked{"$phase:$client:$n"} = $client + 1 if commits($n);
		}
		$maybe{"$phase:$client:" . ($k + 1)} = $client + 1
		  if $open{$pc} && commits($k + 1);
	}
	my ($ledger_plain, $plain, $hot, $version) = check_ledger($node, $what, \%acked, \%maybe,
		q{SELECT batch || ':' || client || ':' || n, hot FROM ledger});
	is($version, $ledger_plain + 1,
		"$what: plain counter version counts the committed changes");
	return ($plain, $hot);
}

# The increments the clients of one phase saw commit: (plain, hot).
sub acknowledged
{
	my ($phase) = @_;
	my ($plain, $hot) = (0, 0);
	foreach my $client (0 .. $clients - 1)
	{
		foreach my $n (1 .. $ended{"$phase:$client"})
		{
			next unless commits($n);
			$plain += 1;
			$hot += $client + 1;
		}
	}
	return ($plain, $hot);
}

# Realms and credentials are as they were; credential_get hands out the very
# same credentials and logs nobody in.
sub check_credentials
{
	my ($what) = @_;
	is($node->safe_psql('postgres', $realms_sql), $realms_before,
		"$what: realms unchanged");
	is($node->safe_psql('postgres', $status_sql), $status_before,
		"$what: credential status unchanged");
	is($node->safe_psql('postgres', $tokens_sql), $tokens_before,
		"$what: credential_get returns the same credentials");
	is($node->safe_psql('postgres', $status_sql), $status_before,
		"$what: and logged nobody in");
}

# The server log since $offset shows a crash recovery.
sub check_recovered
{
	my ($what, $offset) = @_;
	like(slurp_file($node->logfile, $offset),
		qr/database system was not properly shut down; automatic recovery in progress.*redo starts at/s,
		"$what: the server ran crash recovery");
}

# 1. immediate shutdown in the middle of the load
my $load = start_load(1, 120);
$node->poll_query_until('postgres', 'SELECT count(*) >= 2000 FROM ledger WHERE batch = 1')
  or die 'the load did not get going';
$node->stop('immediate');
$load->{run}->finish;
check_cut_off($load, 'immediate shutdown');
read_logs($load, 1);
my $offset = -s $node->logfile;
$node->start;
check_recovered('immediate shutdown', $offset);
check_counters('immediate shutdown');
check_credentials('immediate shutdown');

# 2. kill -9 of a backend that holds a counter's lock, so is inside a
# transaction that has incremented it or is about to
$load = start_load(2, 120);
$node->poll_query_until('postgres', 'SELECT count(*) >= 2000 FROM ledger WHERE batch = 2')
  or die 'the load did not get going';
my ($victim, $holds) = ('', '');
for (my $try = 0; $victim eq '' && $try < 100; $try++)
{
	($victim, $holds) = split /\|/, $node->safe_psql('postgres', q{
		SELECT l.pid, l.object || ' ' || l.counter
		  FROM turnstile.locks l
		 WHERE l.granted AND l.counter IS NOT NULL AND l.pid <> pg_backend_pid()
		 LIMIT 1});
	$victim //= '';
}
isnt($victim, '', 'kill -9: found a backend inside an increment');
note "kill -9: backend $victim holds the lock of $holds";
$offset = -s $node->logfile;
kill 'KILL', $victim;
$load->{run}->finish;
$node->poll_query_until('postgres', 'SELECT 1', '1')
  or die 'the server did not come back after kill -9';
# PostgreSQL 18 names the process by its type: "client backend"
like(slurp_file($node->logfile, $offset),
	qr/(?:server process|client backend) \(PID $victim\) was terminated by signal 9.*all server processes terminated; reinitializing/s,
	'kill -9: the postmaster restarted every backend');
check_cut_off($load, 'kill -9');
read_logs($load, 1);
check_recovered('kill -9', $offset);
my ($plain_before, $hot_before) = check_counters('kill -9');
check_credentials('kill -9');

# 3. the load ends normally, every client having seen each of its
# transactions end; then an immediate shutdown.  Nothing was in flight, so
# the counters must have grown by exactly the acknowledged increments.
$node->pgbench(
	"--no-vacuum --client=$clients --jobs=2 --transactions=100 --log "
	  . '--log-prefix=' . $node->basedir . '/005_phase3 --define=batch=3 --define=n=0',
	0,
	[qr{processed: @{[$clients * 100]}/@{[$clients * 100]}}],
	[qr{^$}],
	'a load that ends normally',
	undef, '--file', $script);
$node->stop('immediate');
$offset = -s $node->logfile;
$node->start;
check_recovered('nothing in flight', $offset);
read_logs({ phase => 3, prefix => $node->basedir . '/005_phase3' }, 0);
my ($plain, $hot) = check_counters('nothing in flight');
my ($acked_plain, $acked_hot) = acknowledged(3);
is($acked_plain, $clients * 80, 'nothing in flight: 80 of each client\'s 100 transactions committed');
is($plain - $plain_before, $acked_plain,
	'nothing in flight: plain counter grew by exactly the acknowledged increments');
is($hot - $hot_before, $acked_hot,
	'nothing in flight: hot counter grew by exactly the acknowledged increments');
check_credentials('nothing in flight');

# The counters go on from there.
is($node->safe_psql('postgres', q{SELECT turnstile.counter_incr('hot', 1)}),
	$hot + 1, 'the hot counter goes on counting after recovery');
is($node->safe_psql('postgres', 'SELECT count(*) FROM turnstile.locks'),
	'0', 'no turnstile lock left behind');

$node->stop;
done_testing();
