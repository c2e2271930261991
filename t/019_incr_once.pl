# counter_incr_once against lost acknowledgements, with 32 real clients.
#
#   1. Deterministic: 32 sessions each commit one counter_incr_once and are
#      then killed before their client reads anything (the increment
#      commits, then the session sleeps until it is terminated).  Each
#      client retries its key, twice, all 32 at once: every retry returns
#      the result the lost call committed, and the counter counts each key
#      once: 32, not 64 or 96.
#   2. Random: 32 clients work through 12 keys each, retrying every call
#      until it answers, while backends are terminated at random (some
#      after their commit, some before, some during).  The counter ends at
#      exactly one per key, and every answer a client got is the key's
#      recorded result.
#
# Everything runs with the server's default settings.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run;
use Time::HiRes qw(usleep);

my $clients = 32;
my $keys_per_client = 12;

my $node = PostgreSQL::Test::Cluster->new('incr_once');
$node->init(extra => [ '-E', 'UTF8', '--no-locale' ]);
$node->start;
$node->safe_psql('postgres', q{
	CREATE EXTENSION pg_turnstile;
	SELECT turnstile.counter_create('lost', 0);
	SELECT turnstile.counter_create('random', 0);
});

#
# 1. lost acknowledgements, made certain
#
my @sessions;
foreach my $i (1 .. $clients)
{
	my $h = $node->background_psql('postgres', on_error_stop => 0);
	$h->query_safe("SET application_name = 'lost_$i'");
	$h->query_until(qr/sent/, qq{
		\\echo sent
		BEGIN;
		SELECT turnstile.counter_incr_once('lost', 1, 'lost-$i');
		COMMIT;
		SELECT pg_sleep(600);
	});
	push @sessions, $h;
}
ok($node->poll_query_until('postgres', qq{
		SELECT count(*) = $clients FROM turnstile.idempotency_key WHERE key LIKE 'lost-%'
		   AND result IS NOT NULL}),
	"$clients calls committed");
is($node->safe_psql('postgres', q{
		SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
		 WHERE application_name LIKE 'lost\_%'}),
	$clients, 'and their sessions were terminated before anyone read an answer');
# their psql processes lost their server: end them, whatever they say
eval { $_->quit; 1 } foreach @sessions;

# every client retries its key, twice, all at once
my $retry_script = "SELECT turnstile.counter_incr_once('lost', 1, 'lost-' || :client_id + 1);\n";
$node->pgbench("--no-vacuum --client=$clients --jobs=2 --transactions=2",
	0, [qr{processed: @{[2 * $clients]}/@{[2 * $clients]}}], [qr{^$}],
	'every client retries its key twice, at once',
	{ '019_retry' => $retry_script });
is($node->safe_psql('postgres', q{SELECT turnstile.counter_get('lost')}),
	$clients, "the counter counted each key once: $clients");
is($node->safe_psql('postgres', q{
		SELECT count(DISTINCT result) || ' ' || min(result) || ' ' || max(result)
		  FROM turnstile.idempotency_key WHERE key LIKE 'lost-%'}),
	"$clients 1 $clients", 'each key recorded its own result, 1 to 32');

# what a retry answers is what the lost call committed
my $answers = $node->safe_psql('postgres', q{
	SELECT string_agg(key || '=' || turnstile.counter_incr_once('lost', 1, key), ',' ORDER BY key)
	  FROM turnstile.idempotency_key WHERE key LIKE 'lost-%'});
is($answers, $node->safe_psql('postgres', q{
		SELECT string_agg(key || '=' || result, ',' ORDER BY key)
		  FROM turnstile.idempotency_key WHERE key LIKE 'lost-%'}),
	'a retry answers with the result of the call whose answer was lost');

#
# 2. random terminations under load
#
my $dir = PostgreSQL::Test::Utils::tempdir;
my $connstr = $node->connstr('postgres');
my @clients;
# should the test die, the clients must not outlive it
END { eval { $_->kill_kill } foreach @clients; }
foreach my $i (1 .. $clients)
{
	# a client works through its keys; a call that fails (its connection
	# was terminated) is retried with the same key until it answers
	my $script = qq{
		for k in \$(seq 1 $keys_per_client); do
			attempts=0
			until r=\$(psql -X -q -At -v ON_ERROR_STOP=1 \\
				-d "$connstr application_name=random_$i" \\
				-c "SELECT turnstile.counter_incr_once('random', 1, 'random-$i-\$k')" 2>/dev/null); do
				attempts=\$((attempts + 1))
				[ \$attempts -lt 1000 ] || exit 1
			done
			echo "random-$i-\$k \$r \$attempts"
		done
		touch "$dir/done_$i"
	};
	push @clients, IPC::Run::start([ 'bash', '-c', $script ], '>', "$dir/client_$i.out");
}

# terminate a random client backend every 20 ms while the clients run
my $kills = 0;
my $deadline = time + $PostgreSQL::Test::Utils::timeout_default;
while (grep({ !-e "$dir/done_$_" } 1 .. $clients) && time < $deadline)
{
	$kills += $node->safe_psql('postgres', q{
		SELECT count(pg_terminate_backend(pid)) FROM (
			SELECT pid FROM pg_stat_activity WHERE application_name LIKE 'random\_%'
			 ORDER BY random() LIMIT 1) s});
	usleep(20_000);
}
my $finished = grep { $_->finish } @clients;
is($finished, $clients, 'every client got an answer for every key');

my (%answer, $retried);
foreach my $i (1 .. $clients)
{
	foreach my $line (split /\n/, slurp_file("$dir/client_$i.out"))
	{
		my ($key, $result, $attempts) = split / /, $line;
		$answer{$key} = $result;
		$retried++ if $attempts > 0;
	}
}
is(scalar(keys %answer), $clients * $keys_per_client, 'one answer per key');
cmp_ok($kills, '>', 0, "backends were terminated: $kills");
cmp_ok($retried // 0, '>', 0, 'and calls were retried: ' . ($retried // 0));
is($node->safe_psql('postgres', q{SELECT turnstile.counter_get('random')}),
	$clients * $keys_per_client, 'the counter counted each key exactly once');
my $recorded = $node->safe_psql('postgres', q{
	SELECT string_agg(key || '=' || result, ',' ORDER BY key)
	  FROM turnstile.idempotency_key WHERE key LIKE 'random-%'});
is(join(',', map { "$_=$answer{$_}" } sort keys %answer), $recorded,
	'every answer a client got is its key\'s recorded result');
is($node->safe_psql('postgres', q{
		SELECT count(DISTINCT result) = count(*) FROM turnstile.idempotency_key
		 WHERE key LIKE 'random-%'}),
	't', 'and no two keys share a result: no increment was applied twice');

# A backend that used the extension before ALTER EXTENSION UPDATE to 1.4
# created the tables of counter_incr_once and rate_limit, in another
# session, uses them afterwards: the new tables send its lookup round again.
# Without that it would still answer right, through SQL, as for a table it
# cannot find; but the direct claim of a key writes the key's row once,
# where the claim through SQL inserts it and then updates it with the
# result, which the transaction's statistics show.
$node->safe_psql('postgres', q{
	CREATE DATABASE older;
});
$node->safe_psql('older', q{CREATE EXTENSION pg_turnstile VERSION '1.3'});
my $pooled = $node->background_psql('older');
is($pooled->query_safe(q{SELECT turnstile.counter_incr('pooled', 1)}), '1',
	'a backend at 1.3 increments');
$node->safe_psql('older', q{ALTER EXTENSION pg_turnstile UPDATE TO '1.4'});
$pooled->query_safe('BEGIN');
is($pooled->query_safe(q{
		SELECT turnstile.counter_incr_once('pooled', 2, 'pooled-1') || ' ' ||
		       turnstile.counter_incr_once('pooled', 2, 'pooled-1') || ' ' ||
		       (SELECT count FROM turnstile.rate_limit('pooled', 3, '1 day')) || ' ' ||
		       (SELECT count FROM turnstile.rate_limit('pooled', 3, '1 day'))}),
	'3 3 1 2', 'and after another session updated it to 1.4, uses the new tables');
is($pooled->query_safe(q{
		SELECT n_tup_ins || ' inserted, ' || n_tup_upd || ' updated'
		  FROM pg_stat_xact_user_tables
		 WHERE relid = 'turnstile.idempotency_key'::regclass}),
	'1 inserted, 0 updated', 'directly, as the tables it now knows');
$pooled->query_safe('COMMIT');
$pooled->quit;

$node->stop;
done_testing();
