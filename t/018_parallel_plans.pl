# Queries planned with parallel plans forced (force_parallel_mode,
# debug_parallel_query from PostgreSQL 16 on, and parallel costs at zero):
# plain queries on a table get a Gather with workers, while the turnstile
# functions, which are PARALLEL UNSAFE, keep their queries out of parallel
# mode and return the right answers; the one PARALLEL SAFE function,
# counter_lock_key, gives the same result inside parallel workers as
# without them.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use FindBin;
use lib $FindBin::RealBin;
use TurnstileTest;

my $primary = PostgreSQL::Test::Cluster->new('parallel');
$primary->init(extra => [ '-E', 'UTF8', '--no-locale' ]);
$primary->start;

# Counters and credentials in every state: user 1 fresh, 2 refreshed after
# it expired, 3 inside the refresh-ahead window, 4 invalidated.
$primary->safe_psql('postgres', 'CREATE EXTENSION pg_turnstile;' . login_service_sql(0) . q{
	SELECT turnstile.realm_set('r', 'svc_login(bigint)', ttl => '1 hour',
							   refresh_ahead => '10 minutes');
	SELECT turnstile.credential_get(u, 'r') FROM generate_series(1, 4) u;
	UPDATE turnstile.credential SET validated_at = validated_at - interval '2 hours'
	 WHERE user_id = 2;
	UPDATE turnstile.credential SET validated_at = validated_at - interval '51 minutes'
	 WHERE user_id = 3;
	SELECT turnstile.credential_invalidate(4, 'r');
	SELECT turnstile.credential_get(2, 'r');

	SELECT turnstile.counter_create('c', 5);
	SELECT turnstile.counter_incr('c', 10);
	SELECT turnstile.counter_create('hot', 0, 4);
	SELECT turnstile.counter_incr('hot', g) FROM generate_series(1, 10) g;
});

my $force =
  $primary->pg_version >= 16 ? 'debug_parallel_query' : 'force_parallel_mode';
my $parallel = qq{
	SET $force = on;
	SET parallel_setup_cost = 0;
	SET parallel_tuple_cost = 0;
	SET min_parallel_table_scan_size = 0;
	SET max_parallel_workers_per_gather = 2;
};
$primary->safe_psql('postgres', q{
	CREATE TABLE big AS SELECT g FROM generate_series(1, 10000) g;
	ANALYZE big;
	SELECT turnstile.realm_set('r_required', 'svc_login(bigint)', ttl => '1 hour',
							   propagation => 'required');
});

# Run statements with parallel plans forced; the output of the last one.
sub forced
{
	my ($sql) = @_;
	return $primary->safe_psql('postgres', "$parallel\n$sql");
}

# The settings are in effect: a plain scan runs in parallel workers, and
# even a query without a table gets a Gather.
my $plan = forced('EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF) SELECT count(*) FROM big');
like($plan, qr/Gather.*Workers Launched: [12]\n.*Parallel Seq Scan on big/s,
	'a plain count(*) runs in parallel workers');
like(forced('EXPLAIN (COSTS OFF) SELECT 1'), qr/Gather/,
	'a query without a table gets a Gather');

# The turnstile functions keep their queries serial, and work.
foreach my $query (q{SELECT turnstile.counter_get('c')},
	q{SELECT count(*) FROM big WHERE turnstile.counter_get('c') > 0},
	q{SELECT * FROM turnstile.counters},
	q{SELECT turnstile.credential_get(1, 'r')})
{
	unlike(forced("EXPLAIN (COSTS OFF) $query"), qr/Gather|Parallel/,
		"no parallel plan for: $query");
}
is(forced(q{SELECT turnstile.counter_get('c')}), '15', 'counter_get');
is(forced(q{SELECT turnstile.counter_incr('c')}), '16', 'counter_incr');
is(forced(q{SELECT count(*) FROM big WHERE turnstile.counter_get('c') > 0}),
	'10000', 'counter_get in the WHERE clause of a scan');
is(forced(q{SELECT count(*) FROM big WHERE g <= turnstile.counter_get('c')}),
	'16', 'counter_get compared with every row');
is(forced(q{SELECT turnstile.counter_incr('rows', count(*)) FROM big}),
	'10000', 'counter_incr of an aggregate over the table');
is(forced(q{SELECT * FROM turnstile.counter_cas('c', 16, 20)}) =~ s/\|[^|]*$//r,
	't|20|4', 'counter_cas');
is(forced(q{SELECT name, value, slots FROM turnstile.counters}),
	"c|20|1\nhot|55|4\nrows|10000|1", 'turnstile.counters');
is(forced(q{SELECT turnstile.counter_incr('hot')}), '56', 'counter_incr of a hot counter');
is(forced(q{SELECT turnstile.credential_get(1, 'r')}), 'tok-1-1',
	'credential_get of a fresh credential');
is(forced(q{SELECT turnstile.credential_get(5, 'r')}), 'tok-5-1',
	'credential_get logs in (requires_new, in a background worker)');
is(forced(q{SELECT turnstile.credential_get(6, 'r_required')}), 'tok-6-1',
	'credential_get logs in (required)');
is(forced(q{
		SELECT string_agg(realm || ' ' || user_id || ' ' || status, ', ' ORDER BY realm, user_id)
		  FROM turnstile.credential_status}),
	'r 1 fresh, r 2 fresh, r 3 refresh_due, r 4 invalidated, r 5 fresh, r_required 6 fresh',
	'turnstile.credential_status');
is(forced(q{
		BEGIN;
		SELECT turnstile.credential_invalidate(1, 'r');
		SELECT object || ' ' || realm || ' ' || user_id || ' ' || mode FROM turnstile.locks;
		ROLLBACK;}) =~ s/.*\n//sr,
	'credential r 1 ExclusiveLock', 'turnstile.locks');

# counter_lock_key is PARALLEL SAFE: inside parallel workers it computes what
# it computes without them.
my $keys = q{SELECT sum(turnstile.counter_lock_key('k' || g) % 1000003) FROM big};
like(forced("EXPLAIN (COSTS OFF) $keys"), qr/Gather.*Partial Aggregate.*Parallel Seq Scan/s,
	'counter_lock_key runs in parallel workers');
is(forced($keys),
	$primary->safe_psql('postgres', "SET max_parallel_workers_per_gather = 0; $keys"),
	'counter_lock_key gives the same keys in parallel workers');

is($primary->safe_psql('postgres', 'SELECT count(*) FROM turnstile.locks'),
	'0', 'no turnstile lock left behind');

$primary->stop;
done_testing();
