# Behind PgBouncer in pool_mode = transaction, with far more clients than
# server connections, turnstile stays exact: every turnstile lock is
# transaction-scoped, so nothing a client holds outlives the transaction that
# the pooler pins to one server connection.
#
#   1. 32 clients increment a plain and a hot counter through 4 server
#      connections, with random deltas and a quarter of the transactions
#      rolled back, once in the simple and once in the extended query
#      protocol.  A ledger written in the same transactions holds exactly the
#      committed increments: both counters must equal its sum, and the ledger
#      shows that the 32 clients really shared at most 4 backends.
#   2. 32 clients stampede one expired user through the pooler, for each
#      propagation: exactly one login, and every caller gets its credential.
#
# The test starts its own pgbouncer on 127.0.0.1 and a free port, in front of
# the node's Unix socket, and stops it at the end.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use FindBin;
use lib $FindBin::RealBin;
use TurnstileTest;
use IPC::Run;

my $pgbouncer = '/usr/sbin/pgbouncer';
# scripts/test installs it; without it the test fails rather than skips
die "$pgbouncer is not installed (Debian: pgbouncer)" unless -x $pgbouncer;

my $clients = 32;
my $pool_size = 4;
my $transactions = 40;
my $login_seconds = 0.2;

my $node = PostgreSQL::Test::Cluster->new('pooled');
$node->init(extra => [ '-E', 'UTF8', '--no-locale' ]);
# fewer connections than clients: only the pooler lets all 32 in
$node->append_conf('postgresql.conf', "max_connections = 20\n");
$node->start;

my $user = $node->safe_psql('postgres', 'SELECT current_user');

$node->safe_psql('postgres', login_service_sql($login_seconds));
$node->safe_psql('postgres', qq{
	CREATE EXTENSION pg_turnstile;
	CREATE TABLE ledger (protocol text NOT NULL, delta bigint NOT NULL,
						 client integer NOT NULL, backend integer NOT NULL);
	CREATE TABLE got (user_id bigint NOT NULL, credential text NOT NULL,
					  backend integer NOT NULL);
});

#
# The pooler: its configuration, user list, log and pid file in the test's
# own directories.
#
my $bouncer_dir = PostgreSQL::Test::Utils::tempdir;
my $bouncer_socket_dir = PostgreSQL::Test::Utils::tempdir_short;
my $bouncer_port = PostgreSQL::Test::Cluster::get_free_port();
my $bouncer_log = "$PostgreSQL::Test::Utils::log_path/007_pgbouncer.log";
my ($node_host, $node_port) = ($node->host, $node->port);

PostgreSQL::Test::Utils::append_to_file("$bouncer_dir/userlist.txt",
	qq{"$user" ""\n});
PostgreSQL::Test::Utils::append_to_file("$bouncer_dir/pgbouncer.ini", qq{
[databases]
postgres = host=$node_host port=$node_port dbname=postgres

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $bouncer_port
unix_socket_dir = $bouncer_socket_dir
auth_type = trust
auth_file = $bouncer_dir/userlist.txt
pool_mode = transaction
default_pool_size = $pool_size
max_client_conn = 100
logfile = $bouncer_log
pidfile = $bouncer_dir/pgbouncer.pid
});

my ($bouncer_stdout, $bouncer_stderr) = ('', '');
my $bouncer = IPC::Run::start([ $pgbouncer, "$bouncer_dir/pgbouncer.ini" ],
	'>', \$bouncer_stdout, '2>', \$bouncer_stderr);
END { $bouncer->kill_kill if defined $bouncer && $bouncer->pumpable; }

# It logs (also to stderr) once it listens on its port.
my $timer = IPC::Run::timer($PostgreSQL::Test::Utils::timeout_default);
$bouncer->pump
  until $bouncer_stderr =~ /listening on 127\.0\.0\.1:$bouncer_port/
  || $timer->is_expired || !$bouncer->pumpable;
like($bouncer_stderr, qr/listening on 127\.0\.0\.1:$bouncer_port/,
	'pgbouncer is listening');

my $through_bouncer = "host=127.0.0.1 port=$bouncer_port dbname=postgres";
is($node->safe_psql('postgres', q{SELECT current_setting('port')},
		connstr => $through_bouncer),
	$node_port, 'a query through pgbouncer reaches the node');

my $pgbench_to_bouncer = "--host=127.0.0.1 --port=$bouncer_port";

#
# 1. Counters: one transaction adds the same random delta to both counters
# and to the ledger, then commits or, one time in four, rolls back.
#
foreach my $protocol ('simple', 'extended')
{
	my $total = $clients * $transactions;

	$node->safe_psql('postgres', qq{
		SELECT turnstile.counter_create('plain_$protocol');
		SELECT turnstile.counter_create('hot_$protocol', 0, 16);
	});
	$node->pgbench(
		"--no-vacuum --client=$clients --jobs=2 --transactions=$transactions "
		  . "--protocol=$protocol $pgbench_to_bouncer",
		0,
		[qr{processed: $total/$total}],
		[qr{^$}],
		"$protocol protocol: $clients clients through pgbouncer",
		{
			"007_increments_$protocol" => qq{
\\set delta random(-5, 100)
\\set outcome random(1, 4)
BEGIN;
SELECT turnstile.counter_incr('plain_$protocol', :delta);
SELECT turnstile.counter_incr('hot_$protocol', :delta);
INSERT INTO ledger VALUES ('$protocol', :delta, :client_id, pg_backend_pid());
\\if :outcome = 1
ROLLBACK;
\\else
COMMIT;
\\endif
}
		});

	my ($committed, $sum, $client_count, $backends) = split /\|/,
	  $node->safe_psql('postgres', qq{
		SELECT count(*), coalesce(sum(delta), 0), count(DISTINCT client),
			   count(DISTINCT backend)
		  FROM ledger WHERE protocol = '$protocol'});
	note "$protocol: $committed of $total transactions committed, delta sum $sum, "
	  . "$client_count clients on $backends backends";

	cmp_ok($committed, '>', $total / 2, "$protocol: most transactions committed");
	cmp_ok($committed, '<', $total, "$protocol: some transactions rolled back");
	is($client_count, $clients, "$protocol: every client committed something");
	cmp_ok($backends, '<=', $pool_size,
		"$protocol: the $clients clients shared at most $pool_size backends");

	is($node->safe_psql('postgres', qq{SELECT turnstile.counter_get('plain_$protocol')}),
		$sum, "$protocol: plain counter equals the sum of committed increments");
	is($node->safe_psql('postgres', qq{SELECT turnstile.counter_get('hot_$protocol')}),
		$sum, "$protocol: hot counter equals the sum of committed increments");
	is($node->safe_psql('postgres',
			qq{SELECT version FROM turnstile.counter_info('plain_$protocol')}),
		$committed + 1, "$protocol: plain counter version counts the committed changes");
	cmp_ok($node->safe_psql('postgres',
			qq{SELECT count(*) FROM turnstile.counter_slot
			   WHERE name = 'hot_$protocol' AND version > 1}),
		'>', 1, "$protocol: hot increments landed on more than one slot");
	is($node->safe_psql('postgres', 'SELECT count(*) FROM turnstile.locks'),
		'0', "$protocol: no turnstile lock left behind");
}

#
# 2. A stampede through the pooler: every client asks once for user 1,
# whose credential has expired and was squeezed out at the service.
#
foreach my $propagation ('requires_new', 'required')
{
	$node->safe_psql('postgres', qq{
		SELECT turnstile.realm_drop('test');
		SELECT turnstile.realm_set('test', 'svc_login(bigint)', 'svc_validate(bigint,text)',
								   ttl => '1 hour', propagation => '$propagation');
		SELECT turnstile.credential_get(1, 'test');
		UPDATE turnstile.credential SET validated_at = validated_at - interval '2 hours';
		UPDATE svc_token SET token = token || '-squeezed';
		TRUNCATE svc_login_log, got;
	});
	is($node->safe_psql('postgres',
			q{SELECT status FROM turnstile.credential_status WHERE user_id = 1}),
		'expired', "$propagation: the credential has expired");

	$node->pgbench(
		"--no-vacuum --client=$clients --jobs=2 --transactions=1 "
		  . "--protocol=extended $pgbench_to_bouncer",
		0,
		[qr{processed: $clients/$clients}],
		[qr{^$}],
		"$propagation: $clients clients stampede through pgbouncer",
		{
			"007_stampede_$propagation" => q{
INSERT INTO got SELECT 1, turnstile.credential_get(1, 'test'), pg_backend_pid();
}
		});

	is($node->safe_psql('postgres', 'SELECT count(*) FROM svc_login_log'),
		'1', "$propagation: one login for $clients callers");
	is($node->safe_psql('postgres', q{
			SELECT count(*) || ' ' || count(DISTINCT g.credential)
			  FROM got g JOIN svc_login_log l ON l.token = g.credential}),
		"$clients 1",
		"$propagation: every caller got the credential that login issued");
	cmp_ok($node->safe_psql('postgres', 'SELECT count(DISTINCT backend) FROM got'),
		'<=', $pool_size, "$propagation: through at most $pool_size backends");
	is($node->safe_psql('postgres', q{
			SELECT status || ' ' || logins FROM turnstile.credential_status
			 WHERE realm = 'test' AND user_id = 1}),
		'fresh 2', "$propagation: the cache counts the one new login");
	is($node->safe_psql('postgres', 'SELECT count(*) FROM turnstile.locks'),
		'0', "$propagation: no turnstile lock left behind");
}

$bouncer->signal('TERM');
$bouncer->finish;
ok(!-e "$bouncer_dir/pgbouncer.pid", 'pgbouncer stopped');

$node->stop;
done_testing();
