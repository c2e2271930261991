# A hot counter with lower = 0 under load: 32 pgbench clients decrement it
# one unit at a time with counter_try_incr, from 10,000, on a server with its
# default settings.  Each applied decrement writes the value it returned to
# a ledger in the same transaction, and a tenth of the transactions instead
# record the value that counter_get and a plain sum of the slot rows show.
# The counter ends at exactly 0 after exactly 10,000 applied units, every
# decrement past the last unit applied nothing, and no reader ever saw a
# value below 0.  The counter has 16 slots to begin with and 32 clients, so
# it grows while it runs: the new slots start without a share of the room.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $clients = 32;
my $per_client = 500;

my $node = PostgreSQL::Test::Cluster->new('bounded_hot');
$node->init(extra => [ '-E', 'UTF8', '--no-locale' ]);
$node->start;
$node->safe_psql('postgres', q{
	CREATE EXTENSION pg_turnstile;
	CREATE TABLE applied (value bigint NOT NULL);
	CREATE TABLE refused (value bigint NOT NULL);
	CREATE TABLE observed (got bigint, summed numeric);
	SELECT turnstile.counter_create('stock', 10000, 16, lower => 0);
});

$node->pgbench(
	"--no-vacuum --client=$clients --jobs=2 --transactions=$per_client",
	0, [qr{processed: \d+}], [qr{^$}],
	"$clients clients decrement a hot counter with lower = 0 from 10,000",
	{
		'022_decrement@9' => q{
WITH t AS (SELECT * FROM turnstile.counter_try_incr('stock', -1)),
     a AS (INSERT INTO applied SELECT value FROM t WHERE applied)
INSERT INTO refused SELECT value FROM t WHERE NOT applied;
},
		'022_watch@1' => q{
INSERT INTO observed
SELECT turnstile.counter_get('stock'),
       (SELECT sum(value) FROM turnstile.counter_slot WHERE name = 'stock');
}
	});

is($node->safe_psql('postgres', 'SELECT count(*) FROM applied'),
	'10000', 'exactly 10,000 decrements applied');
is($node->safe_psql('postgres', q{SELECT turnstile.counter_get('stock')}),
	'0', 'the counter ends at exactly 0');
is($node->safe_psql('postgres', 'SELECT min(value) FROM applied'),
	'0', 'no applied decrement returned a value below 0');
cmp_ok($node->safe_psql('postgres', 'SELECT count(*) FROM refused'),
	'>', 0, 'the decrements past the last unit were refused');
is($node->safe_psql('postgres', 'SELECT count(*) FROM refused WHERE value <> 0'),
	'0', 'each refused one saw the counter at 0');
is($node->safe_psql('postgres', q{
		SELECT count(*) FROM observed WHERE got < 0 OR summed < 0}),
	'0', 'no reader ever saw a value below 0');
cmp_ok($node->safe_psql('postgres', 'SELECT count(*) FROM observed'),
	'>', 100, 'and they looked often');
is($node->safe_psql('postgres', q{
		SELECT count(*) FROM turnstile.counter_slot
		 WHERE name = 'stock' AND (value < slot_lower OR value > slot_upper)}),
	'0', 'every slot is within its share');
is($node->safe_psql('postgres', q{
		SELECT sum(slot_lower) FROM turnstile.counter_slot WHERE name = 'stock'}),
	'0', 'and the shares add up to the lower bound');
note 'slots at the end: '
  . $node->safe_psql('postgres', q{SELECT slots FROM turnstile.counter_info('stock')});

# A bounded hot counter that grows deals its room out over the new slots
# too, so that no increment has to take the exclusive path for them (whose
# rewrite of every slot would make the increments waiting meanwhile ask for
# growth again and again).  16 open transactions hold its 16 slots; a 17th
# increment finds them all busy, asks for growth and waits; once they
# commit, the counter grows to 32 slots.
$node->safe_psql('postgres', q{
	SELECT turnstile.counter_create('far', 1000000000000, 16, lower => 0);
});
my @holders = map { $node->background_psql('postgres') } 1 .. 16;
$_->query_safe(q{BEGIN; SELECT turnstile.counter_decr('far');}) foreach @holders;
my $asker = $node->background_psql('postgres');
$asker->query_until(qr/asking/, q{
	\echo asking
	SELECT turnstile.counter_decr('far');
});
ok($node->poll_query_until('postgres', q{
		SELECT count(*) > 0 FROM pg_stat_activity
		 WHERE wait_event_type = 'Lock' AND query LIKE '%counter_decr(''far'')%'}),
	'a 17th increment waits, every slot being held');
$_->query_safe('COMMIT') foreach @holders;
$_->quit foreach @holders;
$asker->quit;
ok($node->poll_query_until('postgres', q{
		SELECT slots = 32 FROM turnstile.counter_info('far')}),
	'the counter grew to 32 slots');
my ($without_room, $lowers, $value) = split /\|/, $node->safe_psql('postgres', q{
	SELECT count(*) FILTER (WHERE value - slot_lower < 1000000), sum(slot_lower), sum(value)
	  FROM turnstile.counter_slot WHERE name = 'far'});
is($without_room, '0', 'every slot, the new ones too, has a share of the room');
is($lowers, '0', 'the shares still add up to the lower bound');
is($value, 1000000000000 - 17, 'and the value is exact');

$node->stop;
done_testing();
