# An outside fuzzer against the extension: Debian's sqlsmith generates
# random queries over every table, view and function the connecting role can
# use, turnstile's among them, against a database seeded with counters (plain
# and hot), realms of both propagations and cached credentials.  It runs as
# an application role with the README's grants, for a fixed seed and a
# bounded number of queries.  The run fails on any server crash, on any
# internal error (XX000, XX001) raised inside a turnstile function, and on a
# turnstile lock or refresh worker left behind once the fuzzer has gone.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $queries = 4000;
my $seed = 20261206;

my $node = PostgreSQL::Test::Cluster->new('sqlsmith');
$node->init(extra => [ '-E', 'UTF8', '--no-locale' ]);
# %e: the SQLSTATE of every logged error, to find internal ones
$node->append_conf('postgresql.conf', qq{
log_line_prefix = '%m [%p] %e '
log_min_error_statement = error
});
$node->start;

$node->safe_psql('postgres', q{
	CREATE EXTENSION pg_turnstile;
	CREATE ROLE smith LOGIN;
	GRANT USAGE ON SCHEMA turnstile TO smith;
	GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA turnstile TO smith;
	GRANT SELECT ON turnstile.counters, turnstile.credential_status, turnstile.locks TO smith;
	CREATE SCHEMA svc;
	CREATE FUNCTION svc.login(uid bigint) RETURNS text LANGUAGE sql
		AS $$ SELECT 'tok-' || uid || '-' || pg_catalog.random() $$;
	CREATE FUNCTION svc.validate(uid bigint, credential text) RETURNS boolean
		LANGUAGE sql AS $$ SELECT uid % 2 = 0 $$;
	SELECT turnstile.realm_set('default', 'svc.login(bigint)', 'svc.validate(bigint,text)',
							   ttl => '1 minute', retry_after => '0');
	SELECT turnstile.realm_set('inline', 'svc.login(bigint)', NULL,
							   ttl => '1 minute', propagation => 'required');
	SELECT turnstile.realm_grant('default', 'smith');
	SELECT turnstile.realm_grant('inline', 'smith');
	SELECT turnstile.counter_create('plain.' || g, g) FROM generate_series(1, 20) g;
	SELECT turnstile.counter_create('hot.' || g, g, 4) FROM generate_series(1, 5) g;
	SELECT turnstile.credential_get(g, 'default') FROM generate_series(1, 10) g;
	SELECT turnstile.credential_get(g, 'inline') FROM generate_series(1, 10) g;
	ALTER ROLE smith SET statement_timeout = '2s';
});

my $log_start = -s $node->logfile;
my ($stdout, $stderr);
my $connstr = $node->connstr('postgres') . ' user=smith';
my $started = time;
my $ran = IPC::Run::run(
	[ 'sqlsmith', "--target=$connstr", "--seed=$seed", "--max-queries=$queries",
	  '--exclude-catalog', '--verbose' ],
	'>', \$stdout, '2>', \$stderr);
note "sqlsmith took " . (time - $started) . " s: " . substr($stderr, -1500);
ok($ran, 'sqlsmith ran its queries to the end');

my $log = substr(slurp_file($node->logfile), $log_start);
unlike($log, qr/was terminated by signal|server process .* exited with exit code [^0]|terminating any other active server processes/,
	'no server process crashed');
my @turnstile_internal;
{
	my @lines = split /\n/, $log;
	for my $i (0 .. $#lines)
	{
		next unless $lines[$i] =~ / (XX000|XX001) ERROR:/;
		# the statement follows on a STATEMENT line of the same process
		my $context = join "\n", @lines[$i .. ($i + 3 > $#lines ? $#lines : $i + 3)];
		push @turnstile_internal, $context if $context =~ /turnstile/;
	}
}
is(scalar(@turnstile_internal), 0, 'no internal error inside a turnstile function')
  or diag join "\n---\n", @turnstile_internal[0 .. ($#turnstile_internal < 4 ? $#turnstile_internal : 4)];

is($node->safe_psql('postgres', 'SELECT 1'), '1', 'the server still answers');
is($node->safe_psql('postgres', q{
	SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a USING (pid)
	 WHERE l.locktype = 'advisory' AND a.usename = 'smith'}),
	'0', 'no turnstile lock left behind by the fuzzer');
is($node->safe_psql('postgres', q{
	SELECT count(*) FROM pg_stat_activity WHERE backend_type LIKE 'pg_turnstile%'}),
	'0', 'no refresh worker left behind');
is($node->safe_psql('postgres', q{
	SELECT count(*) FROM turnstile.counters WHERE name LIKE 'plain.%' OR name LIKE 'hot.%'}),
	'25', 'the seeded counters are all still there');

$node->stop;
done_testing();
