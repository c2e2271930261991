# No memory growth: one backend runs 1,000,000 turnstile calls (counter_incr
# on plain and hot counters, credential_get fresh hits and refreshes in both
# propagations) and must end with no more than 1 MB more memory than after
# its first 10,000.  The backend reports its own memory contexts to the
# server log (pg_log_backend_memory_contexts) at both points; the test reads
# the "Grand total" lines.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $transactions = 9_000;		# 111 calls each, 1,000 more in refreshes: 1.0 million
my $first = 90;					# 10,000 calls

my $node = PostgreSQL::Test::Cluster->new('memory');
$node->init(extra => [ '-E', 'UTF8', '--no-locale' ]);
# the test measures memory, not WAL flushes or logging
$node->append_conf('postgresql.conf', qq{
synchronous_commit = off
log_statement = none
log_connections = off
log_disconnections = off
});
$node->start;

$node->safe_psql('postgres', q{
	CREATE EXTENSION pg_turnstile;
	CREATE FUNCTION svc_login(uid bigint) RETURNS text LANGUAGE sql
		AS $$ SELECT 'tok-' || uid || '-' || pg_catalog.clock_timestamp() $$;
	SELECT turnstile.realm_set('mem', 'svc_login(bigint)', ttl => '1 hour');
	SELECT turnstile.realm_set('mem_required', 'svc_login(bigint)', ttl => '1 hour',
							   propagation => 'required');
	SELECT turnstile.counter_create('hot', 0, 16);
});

# Each transaction: 10 increments over 1,000 plain counters, one of a hot
# counter, 100 credential_get calls over 1,000 users (fresh hits, after the
# first round), and every 20th time a refresh (invalidate, then get) in one of
# the two propagations.  The log lines come from the client's own backend
# after $first transactions and at the end.
$node->pgbench(
	"--no-vacuum --client=1 --transactions=$transactions -D n=0",
	0,
	[qr{processed: $transactions/$transactions}],
	[qr{^$}],
	'a million calls from one backend',
	{
		'004_calls' => qq{
\\set n :n + 1
\\set base (:n % 10) * 100
SELECT count(turnstile.counter_incr('plain:' || ((:n * 10 + u) % 1000))) FROM generate_series(1, 10) u;
SELECT turnstile.counter_incr('hot');
SELECT count(turnstile.credential_get(:base + u, 'mem')) FROM generate_series(1, 100) u;
\\if :n % 20 = 0
SELECT turnstile.credential_invalidate(:base + 1, CASE WHEN :n % 40 = 0 THEN 'mem' ELSE 'mem_required' END);
SELECT turnstile.credential_get(:base + 1, CASE WHEN :n % 40 = 0 THEN 'mem' ELSE 'mem_required' END);
\\endif
\\if :n = $first
SELECT pg_log_backend_memory_contexts(pg_backend_pid());
\\endif
\\if :n = $transactions
SELECT pg_log_backend_memory_contexts(pg_backend_pid());
\\endif
}
	});

is($node->safe_psql('postgres', q{SELECT turnstile.counter_get('hot')}),
	$transactions, 'every increment counted');

# "Grand total: N bytes in ..." from the backend's two reports, in order
my $log = slurp_file($node->logfile);
my @totals = $log =~ /Grand total: (\d+) bytes in/g;
is(scalar @totals, 2, 'the backend reported its memory twice');
my $growth = $totals[1] - $totals[0];
note sprintf('backend memory after %d calls: %d bytes; after %d calls: %d bytes; growth %d bytes',
	111 * $first, $totals[0], 111 * $transactions + $transactions / 10, $totals[1], $growth);
cmp_ok($growth, '<=', 1024 * 1024, 'at most 1 MB more memory after a million calls');

$node->stop;
done_testing();
