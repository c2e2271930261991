# The Python package (clients/python, package turnstile) against a real
# server, under both of Debian's drivers, psycopg (3) and psycopg2: its
# docstrings' walk-through (boto's Counter), a counter put out of sync by a
# second process, one login per expiry for eight processes, a rejected
# credential invalidated and retried exactly once.  As the README's
# application role, over TCP with its password.

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

my $python = '/usr/bin/python3';
my $package = abs_path(dirname(__FILE__) . '/../clients/python');
my $examples = abs_path(dirname(__FILE__) . '/../examples');

# scripts/test installs them; without them the test fails rather than skips
foreach my $driver ('psycopg', 'psycopg2')
{
	die "$python with $driver is not installed (Debian: python3-$driver)"
	  unless system($python, '-c', "import $driver") == 0;
}

my $node = PostgreSQL::Test::Cluster->new('python_package');
$node->init(extra => [ '-E', 'UTF8', '--no-locale' ]);
$node->append_conf('postgresql.conf', "listen_addresses = '127.0.0.1'\n");
$node->start;
$node->safe_psql('postgres', 'CREATE EXTENSION pg_turnstile');
$node->command_ok(
	[ 'psql', '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-d', 'postgres',
	  '-f', "$examples/login_service.sql" ],
	'the README\'s login service is set up');
my ($role, $password) = setup_app_role($node, 'postgres');
$node->safe_psql('postgres',
	readme_sql_block('Walk-through: a test platform with a pool of accounts'));
$node->safe_psql('postgres', qq{
	UPDATE demo.service_config SET login_seconds = 0.05;
	SELECT turnstile.realm_set('py_short', 'demo.login(bigint)', ttl => '5 seconds');
	SELECT turnstile.realm_grant('py_short', '$role');
});

my $dsn = sprintf('host=127.0.0.1 port=%d dbname=postgres user=%s password=%s',
	$node->port, $role, $password);
foreach my $driver ('psycopg', 'psycopg2')
{
	local $ENV{TURNSTILE_TEST_DRIVER} = $driver;
	local $ENV{TURNSTILE_TEST_DSN} = $dsn;
	local $ENV{PYTHONPATH} = $package;
	my ($stdout, $stderr);
	my $ok = IPC::Run::run(
		[ $python, '-m', 'unittest', '-v', 'tests.test_turnstile' ],
		'>', \$stdout, '2>', \$stderr, init => sub { chdir $package or die $! });
	note $stderr;
	ok($ok, "the package's tests pass with $driver");
	like($stderr, qr/^Ran 8 tests in /m, "$driver: all 8 tests ran");
	unlike($stderr, qr/skipped/, "$driver: none skipped");
}

$node->stop;
done_testing();
