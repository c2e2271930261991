# Sharding with PL/Proxy (examples/plproxy/): one proxy and four shard
# clusters, each shard an ordinary pg_turnstile database set up by
# shard.sql, the proxy set up by setup.sql.  Every call for a counter runs
# on the shard hashtext(name) picks, every call for a user's credential on
# the shard hashint8(user_id) picks, so per-key guarantees hold across the
# whole cluster:
#
#   1. 32 clients increment 200 counters through the proxy: every counter
#      ends exact (equal to a ledger of the increments, and changed once per
#      increment), each lives on exactly one shard, the one the proxy says,
#      and the counters are spread over all four shards.
#   2. A stampede of 64 clients through the proxy on 16 expired, squeezed-
#      out users spread over all shards logs each user in exactly once, on
#      its own shard, and every caller of a user gets that login's credential.
#   3. A stopped shard: calls for its keys fail with a clear error naming
#      it, calls for the other shards' keys keep working; once it is back it
#      serves again, with its counters intact.
#   4. An application role with the documented grants works through the
#      proxy.

use strict;
use warnings;

use Cwd qw(abs_path);
use File::Basename qw(dirname);
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $examples = abs_path(dirname(__FILE__) . '/../examples');
my $nshards = 4;
my $ncounters = 200;
my $nusers = 16;

my $proxy = PostgreSQL::Test::Cluster->new('proxy');
$proxy->init(extra => [ '-E', 'UTF8', '--no-locale' ]);
$proxy->append_conf('postgresql.conf', "shared_buffers = 16MB\n");

# scripts/test installs it; without it the test fails rather than skips
die 'PL/Proxy is not installed (Debian: postgresql-' . $proxy->pg_version->major . '-plproxy)'
  unless -f $proxy->config_data('--sharedir') . '/extension/plproxy.control';

$proxy->start;

# Shards, at the default max_connections (100): each of a step's 32 or 64
# proxy backends holds a connection to every shard it has called, and the
# step after waits until the last step's have gone.
my @shards;
foreach my $i (0 .. $nshards - 1)
{
	my $shard = PostgreSQL::Test::Cluster->new("shard$i");
	$shard->init(extra => [ '-E', 'UTF8', '--no-locale' ]);
	$shard->append_conf('postgresql.conf', "shared_buffers = 16MB\n");
	$shard->start;
	$shard->safe_psql('postgres', "CREATE DATABASE shard_$i");
	$shard->command_ok(
		[ 'psql', '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-d', "shard_$i",
		  '-f', "$examples/plproxy/shard.sql" ],
		"shard $i set up with shard.sql");
	push @shards, $shard;
}

# Run SQL on shard $i's database.
sub on_shard
{
	my ($i, $sql) = @_;
	return $shards[$i]->safe_psql("shard_$i", $sql);
}

# Each shard's database has its own name, so the proxy's errors name the shard.
my $conninfos = join ';', map {
	sprintf('host=%s port=%d dbname=shard_%d connect_timeout=5',
		$shards[$_]->host, $shards[$_]->port, $_)
} 0 .. $nshards - 1;
$proxy->command_ok(
	[ 'psql', '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-d', 'postgres',
	  '-v', "shards=$conninfos", '-f', "$examples/plproxy/setup.sql" ],
	'proxy set up with setup.sql');
is($proxy->safe_psql('postgres', 'SELECT turnstile.shard_count()'),
	$nshards, 'the proxy knows four shards');

# The proxy's row types are the shards' own, read from shard 0, and a second
# run of setup.sql replaces them and what uses them.
my $row_type_sql = q{
	SELECT t.typname, string_agg(a.attname || ' ' || format_type(a.atttypid, a.atttypmod),
								 ', ' ORDER BY a.attnum)
	  FROM pg_type t JOIN pg_attribute a ON a.attrelid = t.typrelid
	 WHERE t.typnamespace = 'turnstile'::regnamespace
	   AND t.typname IN ('counter_state', 'credential_state') AND a.attnum > 0
	 GROUP BY t.typname ORDER BY t.typname};
$proxy->command_ok(
	[ 'psql', '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-d', 'postgres',
	  '-v', "shards=$conninfos", '-f', "$examples/plproxy/setup.sql" ],
	'setup.sql runs again');
is($proxy->safe_psql('postgres', $row_type_sql), on_shard(0, $row_type_sql),
	'the proxy\'s row types are the shards\'');

#
# 1. exact counters across the shards
#
$proxy->safe_psql('postgres', qq{
	SELECT turnstile.counter_create('c' || i) FROM generate_series(1, $ncounters) i;
	CREATE TABLE ledger (c integer NOT NULL, delta bigint NOT NULL);
});

# Half of the increments go to any of the 200 counters, the other half to
# c1 .. c4, so that many clients hit the same keys at once.
my $clients = 32;
my $transactions = 100;
$proxy->pgbench(
	"--no-vacuum --client=$clients --jobs=2 --transactions=$transactions",
	0,
	[qr{processed: @{[$clients * $transactions]}/@{[$clients * $transactions]}}],
	[qr{^$}],
	'32 clients increment 200 counters through the proxy',
	{
		'011_increments' => qq{
\\set c random(1, $ncounters)
\\set hot random(0, 1)
\\if :hot
\\set c random(1, 4)
\\endif
\\set delta random(1, 100)
SELECT turnstile.counter_incr('c' || :c, :delta);
INSERT INTO ledger VALUES (:c, :delta);
}
	});

# Every counter, read through the proxy, against the ledger: the value is
# the sum of its increments, and its version (1 at creation) went up once
# per increment.
my $expected = qq{
	SELECT 'c' || i AS name, coalesce(sum(l.delta), 0) AS value,
		   1 + count(l.delta) AS version
	  FROM generate_series(1, $ncounters) i LEFT JOIN ledger l ON l.c = i
	 GROUP BY i};
is($proxy->safe_psql('postgres', qq{
		SELECT count(*) FROM ($expected) e, turnstile.counter_info(e.name) c
		 WHERE (c.value, c.version) = (e.value, e.version)}),
	$ncounters, 'every counter is exact and changed once per increment (counter_info)');
is($proxy->safe_psql('postgres', qq{
		SELECT count(*) FROM ($expected) e
		 WHERE turnstile.counter_get(e.name) = e.value}),
	$ncounters, 'counter_get agrees');
note 'hottest counter: ' . $proxy->safe_psql('postgres',
	q{SELECT c || ' took ' || count(*) || ' increments' FROM ledger
	  GROUP BY c ORDER BY count(*) DESC LIMIT 1});

# The fan-out view (RUN ON ALL) sees every counter once, on the shard the
# proxy computes, and the same totals.
is($proxy->safe_psql('postgres', qq{
		SELECT count(*) || ' ' || count(DISTINCT name) || ' ' || sum(value)
		  FROM turnstile.counters}),
	"$ncounters $ncounters " . $proxy->safe_psql('postgres', 'SELECT sum(delta) FROM ledger'),
	'the counters view shows every counter once, with the same total');

# Each shard directly: it holds exactly the counters the proxy routes to it.
my @per_shard;
foreach my $i (0 .. $nshards - 1)
{
	my $here = on_shard($i,
		q{SELECT string_agg(name || ':' || value, ',' ORDER BY name) FROM turnstile.counters});
	my $routed = $proxy->safe_psql('postgres', qq{
		SELECT string_agg(e.name || ':' || e.value, ',' ORDER BY e.name)
		  FROM ($expected) e WHERE turnstile.counter_shard(e.name) = $i});
	is($here, $routed, "shard $i holds exactly the counters routed to it, with their values");
	push @per_shard, scalar(split /,/, $here);
}
note 'counters per shard: ' . join(' ', @per_shard);
is(scalar(grep { $_ > 0 } @per_shard), $nshards, 'the counters are spread over all shards');

# An out-of-sync conditional put keeps its SQLSTATE and its DETAIL (with a
# prefix) through the proxy, so a client can retry on it as usual.
my $c1 = $proxy->safe_psql('postgres', q{SELECT turnstile.counter_get('c1')});
my $c2 = $proxy->safe_psql('postgres', q{SELECT turnstile.counter_get('c2')});
my ($ret, $stdout, $stderr) = $proxy->psql('postgres', q{
	\set VERBOSITY verbose
	SELECT turnstile.counter_incr('c1', 1, -1)});
like($stderr, qr/ERROR:  40001: .*\[shard_\d\] REMOTE ERROR: counter "c1" is out of sync/,
	'a conditional put out of sync: 40001 through the proxy');
like($stderr, qr/DETAIL:  Remote detail: Expected value -1, current value $c1\./,
	'with the current value in the DETAIL');

# Each proxied call commits on its shard when it returns: a ROLLBACK on the
# proxy does not take it back.
$proxy->safe_psql('postgres', q{
	BEGIN;
	SELECT turnstile.counter_incr('c1');
	ROLLBACK;
});
is($proxy->safe_psql('postgres', q{SELECT turnstile.counter_get('c1')}),
	$c1 + 1, 'a ROLLBACK on the proxy does not undo a proxied increment');

# counter_incr_once goes to the counter's shard, where its key is kept: a
# retry through the proxy applies nothing and returns the first result.
is($proxy->safe_psql('postgres', q{
		SELECT turnstile.counter_incr_once('c2', 3, 'proxy-key') || ' ' ||
			   turnstile.counter_incr_once('c2', 3, 'proxy-key') || ' ' ||
			   turnstile.counter_get('c2')}),
	join(' ', ($c2 + 3) x 3), 'counter_incr_once through the proxy: once per key');
is(on_shard($proxy->safe_psql('postgres', q{SELECT turnstile.counter_shard('c2')}),
		q{SELECT result FROM turnstile.idempotency_key WHERE key = 'proxy-key'}),
	$c2 + 3, 'the key is kept on the counter\'s shard, with its result');

# rate_limit goes to its key's shard, which counts every call of the key
is(join(' ', map {
			$proxy->safe_psql('postgres', q{
				SELECT allowed || ':' || count FROM turnstile.rate_limit('proxy-api', 3, '1000 days')})
		} 1 .. 4),
	'true:1 true:2 true:3 false:3', 'rate_limit through the proxy: exact on the key\'s shard');
is(join(' ', map {
			$proxy->safe_psql('postgres', q{
				SELECT allowed || ':' || count FROM turnstile.rate_limit('proxy-api-cost', 10, '1000 days', 4)})
		} 1 .. 3),
	'true:4 true:8 false:8', 'rate_limit with a cost through the proxy');

# a counter's bounds live and are enforced on its shard: counter_create's
# bounds, counter_try_incr with and without clamp, 23514 from counter_decr,
# counter_bounds, and the bounds in the proxy's view
is($proxy->safe_psql('postgres', q{
		SELECT turnstile.counter_create('proxy-stock', 3, lower => 0) || ' ' ||
			   (SELECT applied || ':' || value FROM turnstile.counter_try_incr('proxy-stock', -5)) || ' ' ||
			   (SELECT applied || ':' || value || ':' || applied_delta
				  FROM turnstile.counter_try_incr('proxy-stock', -5, true))}),
	'3 false:3 false:0:-3', 'counter_create with bounds and counter_try_incr through the proxy');
($ret, $stdout, $stderr) = $proxy->psql('postgres',
	q{
	\set VERBOSITY verbose
	SELECT turnstile.counter_decr('proxy-stock');
});
like($stderr, qr/ERROR:  23514: .*counter "proxy-stock" would go below its lower bound/,
	'a decrement past the bound: 23514 through the proxy');
$proxy->safe_psql('postgres', q{SELECT turnstile.counter_bounds('proxy-stock', -10, 10)});
is($proxy->safe_psql('postgres', q{
		SELECT lower || ' ' || upper || ' ' || (shard = turnstile.counter_shard(name))
		  FROM turnstile.counters WHERE name = 'proxy-stock'}),
	'-10 10 true', 'counter_bounds through the proxy; the view shows the bounds');
is(on_shard($proxy->safe_psql('postgres', q{SELECT turnstile.counter_shard('proxy-stock')}),
		q{SELECT lower || ' ' || upper FROM turnstile.counter_info('proxy-stock')}),
	'-10 10', 'kept on the counter\'s shard');

#
# 2. a credential stampede through the proxy
#
my $login_seconds = 0.5;
foreach my $i (0 .. $nshards - 1)
{
	on_shard($i, 'UPDATE demo.service_config SET login_seconds = 0');
}
$proxy->safe_psql('postgres', qq{
	SELECT turnstile.credential_get(u) FROM generate_series(1, $nusers) u;
	CREATE TABLE got (user_id bigint NOT NULL, credential text NOT NULL, waited interval NOT NULL);
});
is($proxy->safe_psql('postgres', qq{
		SELECT count(DISTINCT turnstile.credential_shard(u)) FROM generate_series(1, $nusers) u}),
	$nshards, 'the users are spread over all shards');

# expire every credential and squeeze it out at the service, which now
# takes a while to log anyone in
foreach my $i (0 .. $nshards - 1)
{
	on_shard($i, qq{
		UPDATE turnstile.credential SET validated_at = validated_at - interval '1 hour';
		UPDATE demo.session SET token = token || '-squeezed';
		TRUNCATE demo.login_log;
		UPDATE demo.service_config SET login_seconds = $login_seconds;
	});
}

# the 32 proxy backends of the increments have closed their connections
foreach my $i (0 .. $nshards - 1)
{
	$shards[$i]->poll_query_until('postgres', q{
		SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'client backend'})
	  or die "shard $i still has the increments' connections";
}
is($shards[0]->safe_psql('postgres', 'SHOW max_connections'), '100',
	'the shards have the default max_connections');

my $callers = 64;
$proxy->pgbench(
	"--no-vacuum --client=$callers --jobs=2 --transactions=1",
	0,
	[qr{processed: $callers/$callers}],
	[qr{^$}],
	'64 clients on 16 expired users through the proxy',
	{
		'011_stampede' => qq{
\\set uid :client_id % $nusers + 1
INSERT INTO got SELECT :uid, turnstile.credential_get(:uid), clock_timestamp() - statement_timestamp();
}
	});

# The logins, from each shard's service log, against the proxy's routing.
my @logins;
foreach my $i (0 .. $nshards - 1)
{
	push @logins, map { [ $i, split /\|/ ] } grep { $_ ne '' } split /\n/,
	  on_shard($i, 'SELECT user_id, token FROM demo.login_log ORDER BY user_id');
}
is(scalar(@logins), $nusers, 'one login per user across the shards');
is(join(',', sort { $a <=> $b } map { $_->[1] } @logins), join(',', 1 .. $nusers),
	'every user logged in once');
my $routed = $proxy->safe_psql('postgres', qq{
	SELECT string_agg(u || ':' || turnstile.credential_shard(u), ',' ORDER BY u)
	  FROM generate_series(1, $nusers) u});
is(join(',', map { "$_->[1]:$_->[0]" } sort { $a->[1] <=> $b->[1] } @logins), $routed,
	'each user logged in on the shard that owns it');
my $issued = join ',', map { "$_->[1]:$_->[2]" } sort { $a->[1] <=> $b->[1] } @logins;
is($proxy->safe_psql('postgres', q{
		SELECT string_agg(user_id || ':' || credential, ',' ORDER BY user_id)
		  FROM (SELECT user_id, min(credential) AS credential FROM got
				GROUP BY user_id HAVING count(*) = 4 AND count(DISTINCT credential) = 1) g}),
	$issued, 'the 4 callers of each user all got the credential of its one login');
# the callers of a user really queued behind its one login
note 'callers that waited for a login: ' . $proxy->safe_psql('postgres', qq{
	SELECT count(*) FILTER (WHERE waited > interval '@{[$login_seconds / 2]} s')
		   || ' of ' || count(*) || ', slowest ' || max(waited) FROM got});
cmp_ok($proxy->safe_psql('postgres', qq{
		SELECT count(*) FROM got WHERE waited > interval '@{[$login_seconds / 2]} s'}),
	'>=', 32, 'at least 32 callers waited for a login under way');
is($proxy->safe_psql('postgres', q{
		SELECT count(*) FROM turnstile.credential_status WHERE status <> 'fresh'}),
	'0', 'the credential_status view shows every user fresh');

#
# 3. a stopped shard
#
my $down = 2;
my %key;	# a counter and a user per shard
foreach my $i (0 .. $nshards - 1)
{
	$key{$i}{counter} = $proxy->safe_psql('postgres', qq{
		SELECT 'c' || i FROM generate_series(1, $ncounters) i
		 WHERE turnstile.counter_shard('c' || i) = $i ORDER BY i LIMIT 1});
	$key{$i}{user} = $proxy->safe_psql('postgres', qq{
		SELECT u FROM generate_series(1, $nusers) u
		 WHERE turnstile.credential_shard(u) = $i ORDER BY u LIMIT 1});
}
my $before = $proxy->safe_psql('postgres',
	qq{SELECT turnstile.counter_get('$key{$down}{counter}')});

# A session that keeps its connection to the shard over the stop and start.
my $session = $proxy->background_psql('postgres', on_error_stop => 0);
$session->query_safe(qq{SELECT turnstile.counter_get('$key{$down}{counter}')});

$shards[$down]->stop;

($ret, $stdout, $stderr) = $proxy->psql('postgres',
	qq{SELECT turnstile.counter_incr('$key{$down}{counter}')});
isnt($ret, 0, "a counter on the stopped shard: the call fails");
like($stderr, qr/\[shard_$down\] PQconnect\w*: connection to server .* failed/,
	'with an error naming the shard and the failed connection');
($ret, $stdout, $stderr) = $proxy->psql('postgres',
	qq{SELECT turnstile.credential_get($key{$down}{user})});
like($stderr, qr/\[shard_$down\] PQconnect\w*: connection to server .* failed/,
	'a user on the stopped shard: the same error');
($ret, $stdout, $stderr) = $proxy->psql('postgres',
	'SELECT count(*) FROM turnstile.counters');
like($stderr, qr/\[shard_$down\] PQconnect/, 'the fan-out view fails while a shard is down');

foreach my $i (grep { $_ != $down } 0 .. $nshards - 1)
{
	my $counter = $key{$i}{counter};
	my $value = on_shard($i, qq{SELECT turnstile.counter_get('$counter')});
	is($proxy->safe_psql('postgres', qq{SELECT turnstile.counter_incr('$counter')}),
		$value + 1, "shard $i keeps serving its counters");
	like($proxy->safe_psql('postgres', qq{SELECT turnstile.credential_get($key{$i}{user})}),
		qr/^tok-$key{$i}{user}-/, "shard $i keeps serving its credentials");
}

$shards[$down]->start;
is($proxy->safe_psql('postgres', qq{SELECT turnstile.counter_incr('$key{$down}{counter}')}),
	$before + 1, 'the shard serves again once it is back, its counters intact');
like($proxy->safe_psql('postgres', qq{SELECT turnstile.credential_get($key{$down}{user})}),
	qr/^tok-$key{$down}{user}-/, 'and its credentials');

# The session's old connection died with the shard.  PL/Proxy notices that
# either before it sends the next call (a WARNING, then it reconnects and
# serves the call) or when the call fails (one error naming the shard); it
# drops the dead connection either way, so the call after that is served.
my $value = $session->query(qq{SELECT turnstile.counter_get('$key{$down}{counter}')});
if ($value eq '')
{
	like($session->{stderr}, qr/ERROR: .*\[shard_$down\]/,
		'a session that had a connection to the restarted shard: one error naming it');
}
else
{
	is($value, $before + 1,
		'a session that had a connection to the restarted shard: reconnected at once');
}
note "that call: $session->{stderr}";
$session->{stderr} = '';
is($session->query(qq{SELECT turnstile.counter_get('$key{$down}{counter}')}),
	$before + 1, 'and its next call is served');
unlike($session->{stderr}, qr/ERROR/, 'without an error');
$session->quit;

#
# 4. an application role: the grants on the proxy and on every shard
#
$_->safe_psql('postgres', 'CREATE ROLE app LOGIN') foreach $proxy, @shards;
foreach my $i (0 .. $nshards - 1)
{
	on_shard($i, q{
		GRANT USAGE ON SCHEMA turnstile TO app;
		GRANT EXECUTE ON FUNCTION turnstile.counter_incr(text, bigint),
			turnstile.counter_get(text), turnstile.credential_get(bigint, text),
			turnstile.counter_list(), turnstile.credential_list()
		  TO app;
		SELECT turnstile.realm_grant('default', 'app');
	});
}
$proxy->safe_psql('postgres', q{
	GRANT USAGE ON FOREIGN SERVER turnstile_cluster TO app;
	GRANT USAGE ON SCHEMA turnstile TO app;
	GRANT EXECUTE ON FUNCTION turnstile.counter_incr(text, bigint),
		turnstile.counter_get(text), turnstile.credential_get(bigint, text),
		turnstile.counter_list(), turnstile.credential_list()
	  TO app;
	GRANT SELECT ON turnstile.counters, turnstile.credential_status TO app;
});
my $app = $proxy->connstr('postgres') . ' user=app';
is($proxy->safe_psql('postgres', q{
		SELECT turnstile.counter_incr('app_counter', 5) || ' ' || turnstile.counter_get('app_counter')},
		connstr => $app),
	'5 5', 'an application role increments and reads through the proxy');
my $user = $key{1}{user};
like($proxy->safe_psql('postgres', "SELECT turnstile.credential_get($user)",
		connstr => $app),
	qr/^tok-$user-/, 'and gets credentials');
is($proxy->safe_psql('postgres', q{
		SELECT (SELECT count(*) FROM turnstile.counters WHERE name = 'app_counter') || ' ' ||
			   (SELECT count(DISTINCT shard) FROM turnstile.credential_status)},
		connstr => $app),
	"1 $nshards", 'and reads the fan-out views');
($ret, $stdout, $stderr) = $proxy->psql('postgres',
	q{SELECT turnstile.counter_set('app_counter', 0)}, connstr => $app);
like($stderr, qr/permission denied for function counter_set/,
	'what is not granted on the proxy stays denied');

$_->stop foreach @shards;
$proxy->stop;
done_testing();
