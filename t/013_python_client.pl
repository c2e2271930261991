# The Python example: several processes reserve stock from one counter with
# the conditional increment, retrying on 40001 with the current value from
# the error's DETAIL.  The stock must end at exactly zero, every unit
# reserved once (the example's ledger, written in the same transaction as
# each decrement, agrees), and the counter changed once per reservation.
# Then the same under turnstile.isolation = 'repeatable read', where other
# 40001s (without a current value) may come in too.
#
# Runs examples/python/conditional_increment.py with Debian's python3 and
# python3-psycopg2 (the pyenv python on PATH may lack psycopg2), as the
# README's application role, over TCP with its password; its ledger table
# lands in that role's schema, as in the README.

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
my $example = abs_path(dirname(__FILE__) . '/../examples/python/conditional_increment.py');

# scripts/test installs it; without it the test fails rather than skips
die "$python with psycopg2 is not installed (Debian: python3-psycopg2)"
  unless -x $python && system($python, '-c', 'import psycopg2') == 0;

my $node = PostgreSQL::Test::Cluster->new('python_client');
$node->init(extra => [ '-E', 'UTF8', '--no-locale' ]);
$node->append_conf('postgresql.conf',
	"listen_addresses = '127.0.0.1'\nmax_connections = 30\n");
$node->start;
$node->safe_psql('postgres', 'CREATE EXTENSION pg_turnstile');
my ($role, $password) = setup_app_role($node, 'postgres');

my $conninfo = sprintf('host=127.0.0.1 port=%d dbname=postgres user=%s password=%s',
	$node->port, $role, $password);

# Run the example; returns its stdout after checking its exit status.
sub run_example
{
	my ($name, @args) = @_;
	my ($stdout, $stderr);
	my $ok = IPC::Run::run([ $python, $example, $conninfo, @args ],
		'>', \$stdout, '2>', \$stderr);
	note $stdout;
	ok($ok, "$name: the example exits 0") or diag $stderr;
	is($stderr, '', "$name: nothing on stderr");
	return $stdout;
}

# Check the database directly after a run that reserved $stock.
sub check_database
{
	my ($name, $stock) = @_;
	is($node->safe_psql('postgres', q{SELECT turnstile.counter_get('example.stock')}),
		'0', "$name: stock counter ends at 0");
	is($node->safe_psql('postgres',
			'SELECT sum(amount) FROM app.turnstile_example_reservation'),
		$stock, "$name: the reservations add up to the initial stock");
	is($node->safe_psql('postgres',
			'SELECT count(*) FROM app.turnstile_example_reservation WHERE amount < 1'),
		'0', "$name: no empty or negative reservation");
}

my $out = run_example('default', '--stock', '1000', '--processes', '4');
like($out, qr/^4 processes reserved 1000 of 1000 in (\d+) reservations \((\d+) conflicts retried\)$/m,
	'default: reserved the whole stock');
like($out, qr/^stock left: 0$/m, 'default: nothing left');
my ($reservations, $conflicts) =
  $out =~ /in (\d+) reservations \((\d+) conflicts retried\)/;
cmp_ok($conflicts, '>', 0, 'default: clients really collided and retried');
check_database('default', 1000);
is($node->safe_psql('postgres', 'SELECT count(*) FROM app.turnstile_example_reservation'),
	$reservations, 'default: one ledger row per reservation');

# Under 'repeatable read' a reservation whose snapshot is older than another
# client's change also fails with 40001, without a value in the DETAIL: the
# example reads the counter again.
$node->safe_psql('postgres',
	q{ALTER DATABASE postgres SET turnstile.isolation = 'repeatable read'});
$out = run_example('repeatable read', '--stock', '500', '--processes', '6');
like($out, qr/^6 processes reserved 500 of 500 in \d+ reservations/m,
	'repeatable read: reserved the whole stock');
check_database('repeatable read', 500);

$node->stop;
done_testing();
