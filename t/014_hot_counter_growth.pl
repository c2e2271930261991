# A hot counter whose slots are all busy grows (src/grow.c).
#
# 1. Step by step: two transactions hold both slots of a 2-slot counter and a
#    third increment has to wait.  The counter grows to 4 slots, but only
#    after the one that asked has ended and the increments in flight have
#    committed; its value, version, created_at and updated_at stay as they
#    were, and a backend that knew the old slot count goes on exactly.
# 2. Many clients: 8 clients on a 2-slot counter whose slots are held grow
#    it to 4 or 8 slots, never more, and the value is exact to the unit.
# 3. turnstile.hot_slots_max = 2 keeps the same load on 2 slots.
# 4. Only a superuser may change turnstile.hot_slots_max.
# 5. An increment whose request to grow finds no background worker slot free
#    gives the request up at once, so that the next increment that finds
#    every slot busy asks again, while the first still waits.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('growth');
$node->init(extra => [ '-E', 'UTF8', '--no-locale' ]);
$node->start;
$node->safe_psql('postgres', q{
	CREATE EXTENSION pg_turnstile;
	SELECT turnstile.counter_create('g', 0, 2);
});

my $no_grower = q{SELECT count(*) = 0 FROM pg_stat_activity
	 WHERE backend_type = 'pg_turnstile growth'};

sub info
{
	my ($name) = @_;
	return $node->safe_psql('postgres', qq{
		SELECT value, version, slots, created_at, updated_at
		  FROM turnstile.counter_info('$name')});
}

# Wait until the growth worker waits, as turnstile.locks shows: for the
# counter's growth lock, or for the counter (held by an increment's row).
sub worker_waits_for
{
	my ($object) = @_;
	return $node->poll_query_until('postgres', qq{
		SELECT count(*) = 1 FROM turnstile.locks l
		  JOIN pg_stat_activity a USING (pid)
		 WHERE a.backend_type = 'pg_turnstile growth'
		   AND l.object = '$object' AND NOT l.granted});
}

# 1. Step by step
my @holders = map { $node->background_psql('postgres') } 1 .. 2;
$_->query_safe("BEGIN; SELECT turnstile.counter_incr('g')") for @holders;

my $waiter = $node->background_psql('postgres');
my $waiter_pid = $waiter->query_safe('SELECT pg_backend_pid()');
$waiter->query_until(qr/started/, q{
	\echo started
	SELECT turnstile.counter_incr('g');
});

ok($node->poll_query_until('postgres', qq{
		SELECT count(*) = 1 FROM turnstile.locks
		 WHERE pid = $waiter_pid AND object = 'counter slot' AND NOT granted}),
	'the third increment waits for a slot');
ok($node->poll_query_until('postgres', qq{
		SELECT count(*) = 1 FROM turnstile.locks
		 WHERE pid = $waiter_pid AND object = 'counter growth' AND counter = 'g'
		   AND granted}),
	'it holds the counter\'s growth lock');
ok(worker_waits_for('counter growth'), 'the worker waits for the asker\'s transaction');
my $before = info('g');
like($before, qr/^0\|1\|2\|/, 'no growth while the asker runs');

# the holder of the slot the waiter waits for commits: the waiter takes that
# slot and commits too
my $awaited = $node->safe_psql('postgres', qq{
	SELECT h.pid FROM turnstile.locks h JOIN turnstile.locks w USING (slot)
	 WHERE w.pid = $waiter_pid AND NOT w.granted AND h.granted});
my @pids = map { $_->query_safe('SELECT pg_backend_pid()') } @holders;
@holders = reverse @holders if $pids[1] eq $awaited;
$holders[0]->query_safe('COMMIT');
ok(worker_waits_for('counter'), 'then the worker waits for the increment still in flight');
like(info('g'), qr/^2\|3\|2\|/, 'no growth while an increment is in flight');

$holders[1]->query_safe('COMMIT');
ok($node->poll_query_until('postgres', $no_grower), 'the worker is done');
my $after = info('g');
my @b = split /\|/, $before;
my @a = split /\|/, $after;
is_deeply([ @a[0, 1, 2] ], [ 3, 4, 4 ], 'grown to 4 slots, value and version exact');
is($a[3], $b[3], 'created_at unchanged');
is($a[4], $node->safe_psql('postgres', q{
		SELECT max(updated_at) FROM turnstile.counter_slot
		 WHERE name = 'g' AND slot < 2}),
	'updated_at is still that of the last increment');
is($node->safe_psql('postgres', q{
		SELECT string_agg(slot || ':' || slots || ':' || value || ':' || version, ' '
						  ORDER BY slot)
		  FROM turnstile.counter_slot WHERE name = 'g' AND slot >= 2}),
	'2:4:0:0 3:4:0:0', 'the new slots start at zero');

# the holders' backends remembered 2 slots
is($holders[0]->query_safe("SELECT turnstile.counter_incr('g', 10)"), '13',
	'a backend that knew 2 slots adds exactly');
is($holders[1]->query_safe(
		"SELECT turnstile.counter_incr('g', 5), turnstile.counter_get('g')"),
	'18|18', 'and reads exactly');
$_->quit for @holders, $waiter;

# 2. Many clients, and 3. the limit.  Two open transactions hold both slots
# while 8 pgbench clients start, so that their first increments find every
# slot busy for certain, not only when the load happens to line up; once a
# client waits for them, the holders commit and the clients run to the end.
sub hammer
{
	my ($name, $options, $what) = @_;
	$node->safe_psql('postgres', "SELECT turnstile.counter_create('$name', 0, 2)");
	my @slot_holders = map { $node->background_psql('postgres') } 1 .. 2;
	$_->query_safe("BEGIN; SELECT turnstile.counter_incr('$name')") for @slot_holders;

	my $script = "${PostgreSQL::Test::Utils::tmp_check}/014_$name.sql";
	append_to_file($script, "SELECT turnstile.counter_incr('$name');\n");
	my ($out, $err) = ('', '');
	my $clients;
	{
		local $ENV{PGOPTIONS} = $options;
		$clients = IPC::Run::start(
			[
				'pgbench', '--no-vacuum', '--client=8', '--jobs=2',
				'--transactions=300', '--file', $script,
				'--host', $node->host, '--port', $node->port, 'postgres'
			],
			'>', \$out, '2>', \$err);
	}
	ok($node->poll_query_until('postgres', qq{
			SELECT count(*) > 0 FROM pg_stat_activity
			 WHERE wait_event_type = 'Lock'
			   AND query LIKE '%counter_incr(''$name'')%'}),
		"$what: a client waits, both slots being held");
	$_->query_safe('COMMIT') for @slot_holders;
	$_->quit for @slot_holders;
	$clients->finish;
	like($out, qr{processed: 2400/2400}, "$what: 8 clients ran every transaction");
	is($err, '', "$what: without an error");
	ok($node->poll_query_until('postgres', $no_grower),
		"$what: no worker left running");
	return info($name);
}

my ($value, undef, $slots) = split /\|/, hammer('many', '', 'growth');
is($value, '2402', 'growth: the value is exact');
ok($slots == 4 || $slots == 8, "growth: 2 slots grew to 4 or 8 (got $slots)");

($value, undef, $slots) = split /\|/,
  hammer('capped', '-c turnstile.hot_slots_max=2', 'limit');
is($value, '2402', 'limit: the value is exact');
is($slots, '2', 'limit: turnstile.hot_slots_max = 2 keeps 2 slots');

# 4. Superuser only
$node->safe_psql('postgres', q{
	CREATE ROLE app LOGIN;
	GRANT USAGE ON SCHEMA turnstile TO app;
	GRANT EXECUTE ON FUNCTION turnstile.counter_get(text) TO app;
});
# the call loads the library, so that the setting is defined, not a placeholder
my ($ret, $stdout, $stderr) = $node->psql('postgres', q{
	SELECT turnstile.counter_get('g');
	SET turnstile.hot_slots_max = 8;
}, extra_params => [ '-U', 'app', '-v', 'VERBOSITY=verbose' ]);
like($stderr, qr/ERROR:  42501: permission denied to set parameter "turnstile.hot_slots_max"/,
	'a plain role cannot change turnstile.hot_slots_max');

# 5. No worker slot free for a growth: asked again, not dropped.  One worker
# slot (no logical replication launcher), taken by a slow refresh.
$node->append_conf('postgresql.conf',
	"max_worker_processes = 1\nmax_logical_replication_workers = 0\n");
$node->restart;
$node->safe_psql('postgres', q{
	CREATE FUNCTION slow_login(uid bigint) RETURNS text LANGUAGE plpgsql AS $$
	BEGIN
		PERFORM pg_sleep(3);
		RETURN 'slow-' || uid;
	END $$;
	SELECT turnstile.realm_set('slow', 'slow_login(bigint)');
	SELECT turnstile.counter_create('retry', 0, 2);
});
my $slow = $node->background_psql('postgres');
$slow->query_until(qr/started/, q{
	\echo started
	SELECT turnstile.credential_get(1, 'slow');
});
ok($node->poll_query_until('postgres', q{
		SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'pg_turnstile refresh'}),
	'no worker slot: a refresh takes the only one');
my @busy = map { $node->background_psql('postgres') } 1 .. 2;
$_->query_safe("BEGIN; SELECT turnstile.counter_incr('retry')") for @busy;
my $first = $node->background_psql('postgres');
my $first_pid = $first->query_safe('SELECT pg_backend_pid()');
$first->query_until(qr/started/, q{
	\echo started
	SELECT turnstile.counter_incr('retry');
});
ok($node->poll_query_until('postgres', qq{
		SELECT count(*) = 1 FROM turnstile.locks WHERE pid = $first_pid AND NOT granted}),
	'no worker slot: an increment waits for a slot');
is($node->safe_psql('postgres', qq{
		SELECT count(*) FROM turnstile.locks
		 WHERE pid = $first_pid AND object = 'counter growth'}),
	'0', 'no worker slot: the increment gave its request to grow up');
$slow->quit;
ok($node->poll_query_until('postgres', q{
		SELECT count(*) = 0 FROM pg_stat_activity WHERE backend_type = 'pg_turnstile refresh'}),
	'the worker slot is free again');
my $second = $node->background_psql('postgres');
$second->query_until(qr/started/, q{
	\echo started
	SELECT turnstile.counter_incr('retry');
});
ok($node->poll_query_until('postgres', q{
		SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'pg_turnstile growth'}),
	'the next increment that finds every slot busy asks again, and a worker grows the counter');
$_->query_safe('COMMIT') for @busy;
$_->quit for @busy, $first, $second;
ok($node->poll_query_until('postgres', $no_grower), 'the growth is done');
is($node->safe_psql('postgres',
		"SELECT value || '|' || slots FROM turnstile.counter_info('retry')"),
	'4|4', 'the counter grew to 4 slots, its value exact');

$node->stop;
done_testing();
