# Rows that rate_limit and counter_incr write directly, without SQL
# (relaccess.c), on a server with its default settings.
#
# A key on a page filled to the table's fillfactor, called in transactions
# of its own: its dead versions stay on the page until the page's free
# space runs short, where an index scan would prune them after every single
# update (pageinspect shows them); and over 1000 calls its row is updated in
# place on its page all along, because the direct path prunes before the
# room runs out.
#
# One key and one counter written 300 times in one transaction, whose
# versions nobody can prune before it ends: they spill to other pages, and
# the versions that land there are indexed as an UPDATE would index them.
# The key and the counter are found through their index afterwards, exactly
# once, with the value the calls made, and amcheck finds every row in the
# index.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('direct_writes');
$node->init(extra => [ '-E', 'UTF8', '--no-locale' ]);
$node->start;
# 100 keys: the first ones fill block 0 up to the fillfactor, the rest go on
$node->safe_psql('postgres', q{
	CREATE EXTENSION pg_turnstile;
	CREATE EXTENSION amcheck;
	CREATE EXTENSION pageinspect;
	SELECT count(turnstile.rate_limit('fill-' || g, 1000000, '100000 days'))
	  FROM generate_series(1, 100) g;
});

# the block of the first key's row, and the table's size in blocks
my $place = q{
	SELECT (ctid::text::point)[0] || ' ' || pg_relation_size('turnstile.rate_limit') / 8192
	  FROM turnstile.rate_limit WHERE key = 'fill-1'};
is($node->safe_psql('postgres', $place), '0 2', 'the first key\'s row is on block 0 of 2');

# (reading the table itself would prune its pages; pageinspect does not)
$node->safe_psql('postgres',
	"SELECT turnstile.rate_limit('fill-1', 1000000, '100000 days');\n" x 5);
is($node->safe_psql('postgres', q{
		SELECT count(*) FROM heap_page_items(get_raw_page('turnstile.rate_limit', 0))
		 WHERE lp_flags = 1 AND t_xmax::text <> '0'}),
	'5', 'after 5 transactions updating it, its 5 old versions are still on the page');

$node->safe_psql('postgres',
	"SELECT turnstile.rate_limit('fill-1', 1000000, '100000 days');\n" x 1000);
is($node->safe_psql('postgres', q{SELECT count FROM turnstile.rate_limit WHERE key = 'fill-1'}),
	'1006', '1006 calls counted');
is($node->safe_psql('postgres', $place), '0 2',
	'after 1000 more, the row is still on block 0 of 2');

# Two ways to count a key's rows: through its index, and reading the table.
sub rows_found
{
	my ($table, $condition) = @_;
	my $by_index = $node->safe_psql('postgres', qq{
		SET enable_seqscan = off; SET enable_bitmapscan = off;
		SELECT count(*) FROM turnstile.$table WHERE $condition});
	my $by_scan = $node->safe_psql('postgres', qq{
		SET enable_indexscan = off; SET enable_bitmapscan = off;
		SELECT count(*) FROM turnstile.$table WHERE $condition});
	return "$by_index $by_scan";
}

$node->safe_psql('postgres', q{
	BEGIN;
	SELECT count(turnstile.rate_limit('spill', 1000000, '100000 days'))
	  FROM generate_series(1, 300);
	SELECT count(turnstile.counter_incr('spill')) FROM generate_series(1, 300);
	COMMIT;
});
cmp_ok($node->safe_psql('postgres',
		q{SELECT (ctid::text::point)[0] FROM turnstile.rate_limit WHERE key = 'spill'}),
	'>=', 3, 'the key\'s 300 versions spilled from block 1, where it began, to block 3 or later');
is(rows_found('rate_limit', q{key = 'spill'}), '1 1',
	'the key\'s row is found once through its index and once in the table');
is(rows_found('counter_slot', q{name = 'spill'}), '1 1',
	'so is the counter\'s row');
is($node->safe_psql('postgres', q{
		SELECT count FROM turnstile.rate_limit WHERE key = 'spill';
		SELECT turnstile.counter_get('spill');
		SELECT count FROM turnstile.rate_limit('spill', 1000000, '100000 days');
		SELECT turnstile.counter_incr('spill');}),
	"300\n300\n301\n301", 'both kept every call, and the next call finds them');
is(rows_found('rate_limit', q{key = 'spill'}), '1 1', 'the key has still one row');
# (bt_index_check returns nothing, and raises XX002 for a row not indexed)
is($node->safe_psql('postgres', q{
		SELECT 'checked' FROM (SELECT bt_index_check('turnstile.rate_limit_pkey', true),
		                              bt_index_check('turnstile.counter_slot_pkey', true)) c}),
	'checked', 'amcheck finds every row version in the primary keys');

$node->stop;
done_testing();
