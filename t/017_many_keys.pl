# Any number of keys in one transaction, on a server with PostgreSQL's
# default settings.  Its shared lock table has room for about
# max_locks_per_transaction x max_connections = 6,400 entries; a call holds
# its key's lock only while it runs, and the row it wrote holds the key
# after that (keylock.c), so a transaction holds a handful of entries however
# many keys it changed:
#   1. 1,000,000 counter_incr on distinct counters in one transaction commit
#      with every value exact, and while the transaction is open, pg_locks
#      shows no turnstile lock of it and only a few entries in all;
#   2. two such transactions of 300,000 each at once, while a third session
#      does ordinary work that takes a few hundred locks of its own: nobody
#      fails;
#   3. counter_create of 1,000,000 names in one statement;
#   4. 10,000 users refreshed with "required" in one transaction: each
#      logged in once; turnstile.locks shows the transaction holding all of
#      them, and a caller for one of them waiting for it, who then gets that
#      transaction's credential without a login of its own.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('many_keys');
$node->init(extra => [ '-E', 'UTF8', '--no-locale' ]);
# Nothing but the server log's volume is changed from PostgreSQL's defaults.
$node->append_conf('postgresql.conf', 'log_statement = none');
$node->start;
$node->safe_psql('postgres', 'CREATE EXTENSION pg_turnstile');

is($node->safe_psql('postgres', q{
		SELECT current_setting('max_locks_per_transaction') || ' '
			   || current_setting('max_connections')}),
	'64 100', 'the lock table has its default size');

# The lock-table entries of a backend: its turnstile key locks (advisory
# locks of turnstile's kinds, see keylock.c) and all of them.
sub lock_entries
{
	my ($pid) = @_;
	return $node->safe_psql('postgres', qq{
		SELECT count(*) FILTER (WHERE locktype = 'advisory'
									AND (objsubid BETWEEN 21505 AND 21508
										 OR objsubid < 0)),
			   count(*) <= 12
		  FROM pg_locks WHERE pid = $pid});
}

# 1. A million increments in one transaction
my $bulk = $node->background_psql('postgres');
my $bulk_pid = $bulk->query_safe('SELECT pg_backend_pid()');
is($bulk->query_safe(q{
		BEGIN;
		SELECT count(turnstile.counter_incr('d.' || g, g))
		  FROM generate_series(1, 1000000) g}),
	'1000000', '1,000,000 increments of distinct counters in one transaction');
is(lock_entries($bulk_pid), '0|t',
	'the open transaction holds no turnstile lock, and a handful of entries in all');
is($bulk->query_safe(q{
		SELECT count(turnstile.counter_incr('d.' || g, g))
		  FROM generate_series(1, 1000000, 2) g}),
	'500000', 'and increments half of them again');
$bulk->query_safe('COMMIT');
is($node->safe_psql('postgres', q{
		SELECT count(*), count(*) FILTER (WHERE value <> substr(name, 3)::bigint
											  * (1 + substr(name, 3)::bigint % 2))
		  FROM turnstile.counter_slot WHERE name LIKE 'd.%'}),
	'1000000|0', 'committed, every value exact');

# 2. Two transactions of 300,000 at once, and a third session's own locks
my @writers = map { $node->background_psql('postgres') } 1 .. 2;
my @writer_pids = map { $_->query_safe('SELECT pg_backend_pid()') } @writers;
foreach my $i (0, 1)
{
	$writers[$i]->query_safe('BEGIN');
	$writers[$i]->query_until(qr/started/, qq{
		\\echo started
		SELECT count(turnstile.counter_incr('w$i.' || g))
		  FROM generate_series(1, 300000) g;
	});
}
ok($node->poll_query_until('postgres', qq{
		SELECT count(*) = 2 FROM pg_stat_activity
		 WHERE pid IN (@{[ join ', ', @writer_pids ]})
		   AND state = 'idle in transaction'}),
	'two transactions of 300,000 increments each, open at once');
is(lock_entries($_), '0|t', "writer $_ holds no turnstile lock") foreach @writer_pids;
$node->safe_psql('postgres', q{
	CREATE TABLE measurement (day date NOT NULL, reading integer)
		PARTITION BY RANGE (day)});
my ($ret, $out, $err) = $node->psql('postgres', q{
	DO $$
	BEGIN
		FOR i IN 0 .. 299 LOOP
			EXECUTE format('CREATE TABLE measurement_%s PARTITION OF measurement
							  FOR VALUES FROM (%L) TO (%L)', i,
						   date '2026-01-01' + i, date '2026-01-02' + i);
		END LOOP;
	END $$;
	BEGIN;
	INSERT INTO measurement SELECT date '2026-01-01' + i, i FROM generate_series(0, 299) i;
	SELECT count(*) FROM measurement;
	SELECT count(*) > 300 FROM pg_locks WHERE pid = pg_backend_pid();
	COMMIT;});
is($ret, 0, 'meanwhile a third session takes a few hundred locks of its own')
  or diag $err;
is($out, "300\nt", 'and gets its answers');
$_->query_safe('COMMIT') foreach @writers;
is($node->safe_psql('postgres', q{
		SELECT count(*) FILTER (WHERE name LIKE 'w0.%'),
			   count(*) FILTER (WHERE name LIKE 'w1.%'),
			   count(*) FILTER (WHERE value <> 1)
		  FROM turnstile.counter_slot WHERE name LIKE 'w_.%'}),
	'300000|300000|0', 'both committed, every value exact');

# 3. A million counters created in one statement
is($node->safe_psql('postgres', q{
		SELECT count(turnstile.counter_create('c.' || g, g))
		  FROM generate_series(1, 1000000) g}),
	'1000000', 'counter_create of 1,000,000 names in one statement');
is($node->safe_psql('postgres', q{
		SELECT count(*), count(*) FILTER (WHERE value <> substr(name, 3)::bigint)
		  FROM turnstile.counter_slot WHERE name LIKE 'c.%'}),
	'1000000|0', 'every one created with its value');

# 4. 10,000 users refreshed with "required" in one transaction
$node->safe_psql('postgres', q{
	CREATE TABLE bulk_login_log (user_id bigint NOT NULL);
	CREATE FUNCTION bulk_login(uid bigint) RETURNS text LANGUAGE sql AS $$
		INSERT INTO bulk_login_log VALUES (uid) RETURNING 'tok-' || uid
	$$;
	SELECT turnstile.realm_set('bulk', 'bulk_login(bigint)', ttl => '1 hour',
							   propagation => 'required');
});
is($bulk->query_safe(q{
		BEGIN;
		SELECT count(turnstile.credential_get(u, 'bulk'))
		  FROM generate_series(1, 10000) u}),
	'10000', '10,000 users refreshed with "required" in one transaction');
is(lock_entries($bulk_pid), '0|t',
	'the open transaction holds no turnstile lock, and a handful of entries in all');
is($node->safe_psql('postgres', qq{
		SELECT count(DISTINCT user_id) FROM turnstile.locks
		 WHERE realm = 'bulk' AND pid = $bulk_pid AND mode = 'ExclusiveLock'
		   AND granted}),
	'10000', 'turnstile.locks shows it holding all 10,000 users');

my $caller = $node->background_psql('postgres');
my $caller_pid = $caller->query_safe('SELECT pg_backend_pid()');
$caller->query_until(qr/started/, q{
	\echo started
	SELECT turnstile.credential_get(777, 'bulk');
});
ok($node->poll_query_until('postgres', qq{
		SELECT wait_event_type || ':' || wait_event = 'Lock:transactionid'
		  FROM pg_stat_activity WHERE pid = $caller_pid}),
	'a caller for one of them waits for that transaction');
is($node->safe_psql('postgres', qq{
		SELECT mode || ' ' || granted FROM turnstile.locks
		 WHERE realm = 'bulk' AND user_id = 777 AND pid = $caller_pid}),
	'ShareLock false', 'turnstile.locks shows it waiting for the user');
$bulk->query_safe('COMMIT');
like($caller->query_safe('SELECT 1'), qr/^tok-777\n1$/,
	'then gets the credential that transaction committed');
is($node->safe_psql('postgres', q{
		SELECT count(*), count(DISTINCT user_id) FROM bulk_login_log}),
	'10000|10000', 'with one login per user in all');
is($node->safe_psql('postgres', q{
		SELECT count(*) FROM turnstile.credential_status
		 WHERE realm = 'bulk' AND status = 'fresh'}),
	'10000', 'all 10,000 cached');

$_->quit foreach $bulk, @writers, $caller;
$node->stop;
done_testing();
