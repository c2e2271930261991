# Which transactions that call rate_limit commit without waiting for their
# WAL (async_commit.c).
#
# The server names a synchronous standby that never connects.  A commit that
# waits for its WAL flush, as synchronous_commit = on (the default) says,
# then waits for that standby too, forever, with wait event SyncRep; a
# commit that does not wait returns.  So each case below runs in a session
# of its own and ends either waiting on SyncRep or idle after a marker
# statement that only runs once the commit returned: which of the two, the
# test reads in pg_stat_activity, without timing anything.  A waiting commit
# has committed locally; cancelling the wait lets the session go on.
#
# A transaction that wrote only through rate_limit, once or several times,
# returns, and synchronous_commit is on again after it.
# One that wrote anything else (before, between or after its calls, a table
# of the caller's or a counter), or that rolled back a savepoint with a call
# in it, waits, and so does every rate_limit transaction when
# turnstile.rate_limit_synchronous_commit is on, also in the SET clause of
# a function that calls it.  So does a call whose table has a trigger (the
# caller's code, run inside the call).  A plain write waits, which shows the
# standby setting is in force before anything is asserted.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('async_commit');
# The test framework lowers wal_level to minimal and max_wal_senders to 0
# unless asked for streaming, which would change other settings too
# (wal_log_hints, shared_buffers, max_connections): put back PostgreSQL's
# defaults for these two instead, without which no commit waits for a
# standby.
$node->init(extra => [ '-E', 'UTF8', '--no-locale' ]);
$node->append_conf('postgresql.conf', qq{
wal_level = replica
max_wal_senders = 10
synchronous_standby_names = 'nobody_connects'
});
$node->start;
# (the set-up's own commits would wait for the standby: it runs with
# synchronous_commit = off.  The VACUUM FREEZE leaves nothing for a
# session's first reads of the catalogs to prune or hint, which would write
# WAL before its first call.)
$node->safe_psql('postgres', q{
	SET synchronous_commit = off;
	CREATE EXTENSION pg_turnstile;
	CREATE TABLE app_log (n int);
	SELECT turnstile.counter_get('loads the library');
	CREATE FUNCTION limited(k text) RETURNS boolean LANGUAGE sql
		SET turnstile.rate_limit_synchronous_commit = on
		AS $$ SELECT allowed FROM turnstile.rate_limit(k, 10, '1 hour') $$;
	CREATE FUNCTION log_call() RETURNS trigger LANGUAGE plpgsql
		AS $$ BEGIN INSERT INTO app_log VALUES (99); RETURN NULL; END $$;
	VACUUM (FREEZE);
});

my $case = 0;

# Run $sql in a session of its own; return 'waited' if its commit waits for
# the standby (then cancel the wait) or 'returned' if it ran to its end,
# and the session's synchronous_commit afterwards.  No statement may fail.
sub commit_outcome
{
	my ($sql) = @_;
	$case++;
	my $marker = "SELECT 'case $case done'";
	my $session = $node->background_psql('postgres', on_error_stop => 0);
	my $pid = $session->query_safe('SELECT pg_backend_pid()');
	$session->query_until(qr/sent/, "\\echo sent\n$sql\n$marker;\n");
	$node->poll_query_until('postgres', qq{
			SELECT wait_event = 'SyncRep' OR (state = 'idle' AND query = \$\$$marker;\$\$)
			  FROM pg_stat_activity WHERE pid = $pid})
	  or die "case $case: the session neither waits nor ends";
	my $outcome = $node->safe_psql('postgres', qq{
			SELECT CASE WHEN wait_event = 'SyncRep' THEN 'waited' ELSE 'returned' END
			  FROM pg_stat_activity WHERE pid = $pid});
	if ($outcome eq 'waited')
	{
		$node->safe_psql('postgres', "SELECT pg_cancel_backend($pid)");
		$node->poll_query_until('postgres', qq{
				SELECT state = 'idle' AND query = \$\$$marker;\$\$
				  FROM pg_stat_activity WHERE pid = $pid})
		  or die "case $case: the cancelled wait did not end";
	}
	# (what the session printed before, the cancelled wait's WARNING too,
	# comes along on older versions)
	my $printed = $session->query(
		qq{\\echo error: :LAST_ERROR_SQLSTATE\n}
		  . q{SELECT 'setting: ' || current_setting('synchronous_commit')});
	my ($error) = $printed =~ /error: (\w+)/;
	my ($setting) = $printed =~ /setting: (\w+)/;
	is($error, '00000', "case $case: no statement failed");
	$session->quit;
	return ($outcome, $setting);
}

my ($outcome, $printed);

($outcome) = commit_outcome(q{SELECT turnstile.counter_incr('c1');});
is($outcome, 'waited', 'a counter_incr alone waits for the standby: the setting is in force');

($outcome, $printed) = commit_outcome(
	q{SELECT turnstile.rate_limit('k1', 10, '1 hour');});
is($outcome, 'returned', 'one rate_limit in its own transaction returns without waiting');
is($printed, 'on', 'synchronous_commit is on again after that commit');

($outcome, $printed) = commit_outcome(q{
	BEGIN;
	SELECT turnstile.rate_limit('k2', 10, '1 hour');
	SELECT turnstile.rate_limit('k3', 10, '1 hour');
	SELECT turnstile.rate_limit('k2', 10, '1 hour');
	COMMIT;
});
is($outcome, 'returned', 'three calls in one transaction: returns');
is($printed, 'on', 'synchronous_commit is on again');

($outcome) = commit_outcome(q{
	BEGIN;
	INSERT INTO app_log VALUES (4);
	SELECT turnstile.rate_limit('k4', 10, '1 hour');
	COMMIT;
});
is($outcome, 'waited', 'an INSERT before the call: waits');

($outcome) = commit_outcome(q{
	BEGIN;
	SELECT turnstile.rate_limit('k5', 10, '1 hour');
	INSERT INTO app_log VALUES (5);
	SELECT turnstile.rate_limit('k5', 10, '1 hour');
	COMMIT;
});
is($outcome, 'waited', 'an INSERT between two calls: waits');

($outcome) = commit_outcome(q{
	BEGIN;
	SELECT turnstile.rate_limit('k6', 10, '1 hour');
	SELECT turnstile.counter_incr('c6');
	COMMIT;
});
is($outcome, 'waited', 'a counter_incr after the call: waits');

($outcome) = commit_outcome(q{
	BEGIN;
	SELECT turnstile.rate_limit('k7', 10, '1 hour');
	SAVEPOINT s;
	SELECT turnstile.rate_limit('k7', 10, '1 hour');
	ROLLBACK TO SAVEPOINT s;
	COMMIT;
});
is($outcome, 'waited', 'a call rolled back to a savepoint: waits');

($outcome) = commit_outcome(q{
	SET turnstile.rate_limit_synchronous_commit = on;
	SELECT turnstile.rate_limit('k8', 10, '1 hour');
});
is($outcome, 'waited', 'turnstile.rate_limit_synchronous_commit = on: a call alone waits');

($outcome) = commit_outcome(q{SELECT limited('k9');});
is($outcome, 'waited', 'the setting on in the SET clause of the function that calls: waits');

# A trigger on the extension's table is the caller's code run inside the
# call: the call writes through SQL, and the commit waits.
$node->safe_psql('postgres', q{
	SET synchronous_commit = off;
	CREATE TRIGGER log_call AFTER INSERT OR UPDATE ON turnstile.rate_limit
		FOR EACH ROW EXECUTE FUNCTION log_call();
});
($outcome) = commit_outcome(q{SELECT turnstile.rate_limit('k1', 10, '1 hour');});
is($outcome, 'waited', 'a trigger on turnstile.rate_limit that writes: waits');
$node->safe_psql('postgres', q{
	SET synchronous_commit = off;
	DROP TRIGGER log_call ON turnstile.rate_limit;
});

# Every commit above happened, waited for or not.
is($node->safe_psql('postgres', q{
		SELECT string_agg(key || '=' || count, ' ' ORDER BY key) FROM turnstile.rate_limits}),
	'k1=2 k2=2 k3=1 k4=1 k5=2 k6=1 k7=1 k8=1 k9=1', 'every call counted as its transaction said');
is($node->safe_psql('postgres', q{
		SELECT string_agg(n::text, ' ' ORDER BY n) FROM app_log}),
	'4 5 99', 'and every INSERT is there, the trigger\'s too');

$node->stop;
done_testing();
