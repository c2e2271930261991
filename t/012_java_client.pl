# The Java example: a test platform whose thread pool runs test cases in
# parallel, each asking credential_get for its account's credential and
# counting itself (examples/java/TestPlatform.java, through the Turnstile
# class of clients/java, built here with javac against Debian's JDBC
# driver), as the README's application role over TCP on 127.0.0.1 with its
# password.  First the class's own checks (clients/java/test).
#
#   1. One JVM, fresh accounts: every account is logged in exactly once, no
#      case gets a rejected credential, and the run counter is exact.
#   2. The credentials expire and are squeezed out at the service, and two
#      JVMs run at once: a lock inside a JVM could not stop them from both
#      logging an account in, but each account is still logged in exactly
#      once in total, and each JVM's run counter is exact.
#
# The program checks and prints its own results; the test checks them and
# the login service's own log in the database.

use strict;
use warnings;

use Cwd qw(abs_path);
use File::Basename qw(dirname);
use FindBin;
use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

use lib $FindBin::RealBin;
use TurnstileTest;

my $jar = '/usr/share/java/postgresql.jar';
my $examples = abs_path(dirname(__FILE__) . '/../examples');
my $clients = abs_path(dirname(__FILE__) . '/../clients');

# scripts/test installs them; without them the test fails rather than skips
die 'javac, java or the JDBC driver is missing (Debian: default-jdk-headless, libpostgresql-jdbc-java)'
  unless -f $jar
  && system('sh', '-c', 'command -v javac >/dev/null && command -v java >/dev/null') == 0;

my $accounts = 8;

my $node = PostgreSQL::Test::Cluster->new('java_client');
$node->init(extra => [ '-E', 'UTF8', '--no-locale' ]);
$node->append_conf('postgresql.conf',
	"listen_addresses = '127.0.0.1'\nmax_connections = 60\n");
$node->start;

# The extension and the demo login service, whose logins take 0.2 s so
# that the cases of an account pile up behind the one that logs in.
$node->safe_psql('postgres', 'CREATE EXTENSION pg_turnstile');
$node->command_ok(
	[ 'psql', '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-d', 'postgres',
	  '-f', "$examples/login_service.sql" ],
	'the demo login service is set up');
$node->safe_psql('postgres', 'UPDATE demo.service_config SET login_seconds = 0.2');

# The program runs as the README's application role, over TCP with its
# password, with the README's grants for the login service's realm and API.
my ($role, $password) = setup_app_role($node, 'postgres');
$node->safe_psql('postgres',
	readme_sql_block('Walk-through: a test platform with a pool of accounts'));

# the Turnstile class (clients/java), built into a jar as the README shows
my $classes = PostgreSQL::Test::Utils::tempdir;
command_ok([ "$clients/java/build", $classes ], 'clients/java/build makes turnstile.jar');
my $cp = "$classes:$classes/turnstile.jar:$jar";
# the source is UTF-8, whatever the locale says (there may be none)
command_ok([ 'javac', '-encoding', 'UTF-8', '-Xlint:all', '-Werror', '-d', $classes,
	'-cp', $cp, "$examples/java/TestPlatform.java", "$clients/java/test/TurnstileCheck.java" ],
	'TestPlatform.java and TurnstileCheck.java compile against it');

my $url = sprintf('jdbc:postgresql://127.0.0.1:%d/postgres?user=%s&password=%s',
	$node->port, $role, $password);

# the class's own checks: counters, the conditional incr's OutOfSyncException
# with the current value, credentials and invalidation
my ($check_out, $check_err) = ('', '');
ok(IPC::Run::run([ 'java', '-cp', $cp, 'TurnstileCheck', $url ],
		'>', \$check_out, '2>', \$check_err), 'TurnstileCheck passes')
  or diag "$check_out$check_err";
unlike($check_out, qr/FAILED/, 'every check of the Turnstile class holds');
like($check_out, qr/^ok$/m, 'and they all ran');

my @java = ('java', '-cp', $cp, 'TestPlatform', $url);

# Start the program; returns a handle for finish_java.
sub start_java
{
	my ($cases, $threads, $run) = @_;
	my %h = (stdout => '', stderr => '');
	$h{run} = IPC::Run::start([ @java, $accounts, $cases, $threads, $run ],
		'>', \$h{stdout}, '2>', \$h{stderr});
	return \%h;
}

# Wait for it, check its output, and return its per-account logins.
sub finish_java
{
	my ($h, $name, $cases) = @_;
	my $ok = $h->{run}->finish;
	note $h->{stdout};
	ok($ok, "$name: the program exits 0") or diag $h->{stderr};
	like($h->{stdout}, qr/^run counter: $cases \(expected $cases\)$/m,
		"$name: run counter exact");
	like($h->{stdout}, qr/^rejected credentials: 0$/m,
		"$name: no case got a squeezed-out credential");
	like($h->{stdout}, qr/^failed cases: 0$/m, "$name: no case failed");
	my ($logins) = $h->{stdout} =~ /^logins per account: (.*)$/m;
	return $logins // '';
}

# Logins the service performed per account: "1=1 2=1 ...".
sub service_logins
{
	return $node->safe_psql('postgres', qq{
		SELECT string_agg(u || '=' || (SELECT count(*) FROM demo.login_log l
									   WHERE l.user_id = u), ' ' ORDER BY u)
		  FROM generate_series(1, $accounts) u});
}

my $once = join ' ', map { "$_=1" } 1 .. $accounts;

# 1. one JVM, 16 threads, 400 cases on fresh accounts
my $h = start_java(400, 16, 'first');
is(finish_java($h, 'one JVM', 400), $once,
	'one JVM: it saw one login per account');
is(service_logins(), $once, 'one JVM: the service logged each account in once');
is($node->safe_psql('postgres',
		q{SELECT turnstile.counter_get('testplatform.first.cases')}),
	'400', 'one JVM: the run counter in the database');

# 2. expire and squeeze out every credential, then two JVMs at once
$node->safe_psql('postgres', q{
	UPDATE turnstile.credential SET validated_at = validated_at - interval '1 hour';
	UPDATE demo.session SET token = token || '-squeezed';
	TRUNCATE demo.login_log;
});
my @jvms = (start_java(300, 8, 'jvm_a'), start_java(300, 8, 'jvm_b'));
my @seen = map { finish_java($jvms[$_], "JVM " . ($_ + 1) . ' of 2', 300) } 0 .. 1;
is(service_logins(), $once,
	'two JVMs: the service logged each account in once in total');
is($node->safe_psql('postgres', q{
		SELECT turnstile.counter_get('testplatform.jvm_a.cases') || ' ' ||
			   turnstile.counter_get('testplatform.jvm_b.cases')}),
	'300 300', 'two JVMs: both run counters exact');

# Each login was seen by the JVMs that ran while it happened; between them
# they saw each account's login (at least) once.
my %seen;
foreach my $pair (map { split / / } @seen)
{
	my ($account, $n) = split /=/, $pair;
	$seen{$account} += $n;
}
is(scalar(grep { ($seen{$_} // 0) >= 1 } 1 .. $accounts), $accounts,
	'two JVMs: each account\'s login was seen by a JVM');

is($node->safe_psql('postgres',
		q{SELECT count(*) FROM turnstile.credential_status WHERE logins <> 2}),
	'0', 'pg_turnstile counted two logins per account in all');
is($node->safe_psql('postgres', 'SELECT count(*) FROM turnstile.locks'),
	'0', 'no turnstile lock left behind');

$node->stop;
done_testing();
