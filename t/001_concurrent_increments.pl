# Many real clients increment one plain and one hot counter at once, with
# random deltas, and roll back about a quarter of their transactions.  Each
# transaction also writes its delta into a ledger table, so the ledger holds
# exactly the committed increments: both counters must end equal to its sum,
# to the unit.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $clients = 16;
my $transactions = 250;

my $node = PostgreSQL::Test::Cluster->new('increments');
$node->init(extra => [ '-E', 'UTF8', '--no-locale' ]);
$node->append_conf('postgresql.conf', "max_connections = 60\n");
$node->start;

$node->safe_psql('postgres', q{
	CREATE EXTENSION pg_turnstile;
	CREATE TABLE ledger (delta bigint NOT NULL);
	SELECT turnstile.counter_create('plain');
	SELECT turnstile.counter_create('hot', 0, 16);
});

# One transaction: the same random delta on both counters and in the ledger,
# then COMMIT or, one time in four, ROLLBACK.
$node->pgbench(
	"--no-vacuum --client=$clients --jobs=2 --transactions=$transactions",
	0,
	[qr{processed: @{[$clients * $transactions]}/@{[$clients * $transactions]}}],
	[qr{^$}],
	'concurrent increments with rollbacks',
	{
		'001_increments' => q{
\set delta random(-5, 100)
\set outcome random(1, 4)
BEGIN;
SELECT turnstile.counter_incr('plain', :delta);
SELECT turnstile.counter_incr('hot', :delta);
INSERT INTO ledger VALUES (:delta);
\if :outcome = 1
ROLLBACK;
\else
COMMIT;
\endif
}
	});

my ($committed, $sum) = split /\|/, $node->safe_psql('postgres',
	'SELECT count(*), coalesce(sum(delta), 0) FROM ledger');
my $total = $clients * $transactions;
note "$committed of $total transactions committed, delta sum $sum";

cmp_ok($committed, '>', $total / 2, 'most transactions committed');
cmp_ok($committed, '<', $total, 'some transactions rolled back');

is($node->safe_psql('postgres', q{SELECT turnstile.counter_get('plain')}),
	$sum, 'plain counter equals the sum of committed increments');
is($node->safe_psql('postgres', q{SELECT turnstile.counter_get('hot')}),
	$sum, 'hot counter equals the sum of committed increments');
is($node->safe_psql('postgres',
		q{SELECT value FROM turnstile.counters WHERE name = 'hot'}),
	$sum, 'the counters view agrees');

# Every committed transaction bumped the plain counter's version once.
is($node->safe_psql('postgres',
		q{SELECT version FROM turnstile.counter_info('plain')}),
	$committed + 1, 'plain counter version counts the committed changes');

# The hot counter really spread its increments over several slots.
cmp_ok($node->safe_psql('postgres',
		q{SELECT count(*) FROM turnstile.counter_slot
		  WHERE name = 'hot' AND version > 1}),
	'>', 1, 'hot increments landed on more than one slot');

# No turnstile lock outlives its transaction.
is($node->safe_psql('postgres', 'SELECT count(*) FROM turnstile.locks'),
	'0', 'no turnstile lock left behind');

$node->stop;
done_testing();
