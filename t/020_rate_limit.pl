# rate_limit under load: 32 pgbench clients hammer one key limited to 100
# per second for 5 seconds, on a server with its default settings.  Each
# allowed call writes a ledger row in the same transaction, with the end of
# the window it was counted in.  Every window allowed at most 100, and each
# window the calls covered whole allowed exactly 100: never one more at a
# window's boundary, never one lost to a race.  The calls covered a window
# whole when some were counted in the window before it and some in the one
# after it (pgbench's clients start calling only once they have connected,
# which on a slow machine takes a good part of a second).  The key's row agrees with
# the ledger for the last window.  Then 10,000 keys at once, 2 per key per
# second: no key ever goes past its limit.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $clients = 32;
my $seconds = 5;

my $node = PostgreSQL::Test::Cluster->new('rate_limit');
$node->init(extra => [ '-E', 'UTF8', '--no-locale' ]);
$node->start;
$node->safe_psql('postgres', q{
	CREATE EXTENSION pg_turnstile;
	CREATE TABLE ledger (key text NOT NULL, reset_at timestamptz NOT NULL);
});

my $start = $node->safe_psql('postgres', 'SELECT clock_timestamp()');
$node->pgbench("--no-vacuum --client=$clients --jobs=2 --time=$seconds",
	0, [qr{processed: \d+}], [qr{^$}],
	"$clients clients hammer one key limited to 100 per second",
	{
		'020_one_key' => q{
INSERT INTO ledger SELECT 'api', reset_at FROM turnstile.rate_limit('api', 100, '1 second') WHERE allowed;
}
	});
my $end = $node->safe_psql('postgres', 'SELECT clock_timestamp()');

my $windows = $node->safe_psql('postgres', qq{
	SELECT string_agg(n::text, ' ' ORDER BY reset_at) FROM (
		SELECT reset_at, count(*) AS n FROM ledger WHERE key = 'api' GROUP BY reset_at) w});
note "allowed per window: $windows";
is($node->safe_psql('postgres', q{
		SELECT count(*) FROM (SELECT reset_at FROM ledger WHERE key = 'api'
		   GROUP BY reset_at HAVING count(*) > 100) w}),
	'0', 'no window allowed more than 100');
my $full = $node->safe_psql('postgres', qq{
	SELECT count(*) || ' ' || count(*) FILTER (WHERE n = 100) FROM (
		SELECT reset_at, count(*) AS n FROM ledger WHERE key = 'api'
		 GROUP BY reset_at
		HAVING reset_at - interval '1 second' >= '$start'::timestamptz
		   AND reset_at <= '$end'::timestamptz
		   AND reset_at > (SELECT min(reset_at) FROM ledger WHERE key = 'api')
		   AND reset_at < (SELECT max(reset_at) FROM ledger WHERE key = 'api')) w});
my ($whole, $exact) = split / /, $full;
cmp_ok($whole, '>=', $seconds - 2, "the calls covered $whole windows whole");
is($exact, $whole, 'and each of them allowed exactly 100');
is($node->safe_psql('postgres', q{
		SELECT r.count = (SELECT count(*) FROM ledger l
		                   WHERE l.key = 'api' AND l.reset_at = r.window_start + r.per)
		  FROM turnstile.rate_limit r WHERE r.key = 'api'}),
	't', 'the key\'s row counts what the ledger shows for its window');

$node->pgbench("--no-vacuum --client=$clients --jobs=2 --time=2",
	0, [qr{processed: \d+}], [qr{^$}],
	"$clients clients on 10,000 keys limited to 2 per second each",
	{
		'020_many_keys' => q{
\set k random(1, 10000)
INSERT INTO ledger SELECT 'k' || :k, reset_at FROM turnstile.rate_limit('k' || :k, 2, '1 second') WHERE allowed;
}
	});
is($node->safe_psql('postgres', q{
		SELECT count(*) FROM (SELECT key, reset_at FROM ledger WHERE key LIKE 'k%'
		   GROUP BY key, reset_at HAVING count(*) > 2) w}),
	'0', 'no key allowed more than 2 in any window');
cmp_ok($node->safe_psql('postgres', q{SELECT count(DISTINCT key) FROM ledger WHERE key LIKE 'k%'}),
	'>', 1000, 'over a thousand keys were used');

$node->stop;
done_testing();
