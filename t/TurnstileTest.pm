# Copyright: pg_turnstile contributors
#
# t/TurnstileTest.pm — fixtures that several TAP files of pg_turnstile share:
# a slow login service for the credential tests, the check of a ledger of
# increments against what the clients saw and against the counters, a
# reader of pgbench's per-transaction logs, and the README's application
# role, set up exactly as the README tells a reader to.
package TurnstileTest;

use strict;
use warnings;

use Cwd qw(abs_path);
use Exporter 'import';
use File::Basename qw(dirname);
use Test::More;
use PostgreSQL::Test::Utils ();

our @EXPORT = qw(login_service_sql ledger_sql write_ledger_script check_ledger
  count_pgbench_log readme_sql_block setup_app_role);

# The first SQL block of the README after the heading $heading, as the
# README shows it.
sub readme_sql_block
{
	my ($heading) = @_;
	my $readme = PostgreSQL::Test::Utils::slurp_file(
		abs_path(dirname(__FILE__) . '/../README.md'));

	$readme =~ /^#+ \Q$heading\E\n.*?^```sql\n(.*?)^```$/ms
	  or die "README.md has no SQL block after the heading \"$heading\"";
	return $1;
}

# Create the README's application role (section "The application's role")
# in database $db of $node, with the README's grants and password, and let
# it in over TCP on 127.0.0.1 with password authentication only, as
# Debian's cluster does.  The node must listen on 127.0.0.1.  Returns the
# role's name and password.
sub setup_app_role
{
	my ($node, $db) = @_;
	my $sql = readme_sql_block("The application's role");
	my ($role, $password) = $sql =~ /^CREATE ROLE (\w+) LOGIN PASSWORD '([^']*)'/m
	  or die "the README's application role has no CREATE ROLE ... PASSWORD";
	my $hba = $node->data_dir . '/pg_hba.conf';
	my $rules = PostgreSQL::Test::Utils::slurp_file($hba);

	# first, so that no trust line for 127.0.0.1 lets the role in without it
	PostgreSQL::Test::Utils::append_to_file("$hba.new",
		"host all $role 127.0.0.1/32 scram-sha-256\n$rules");
	rename("$hba.new", $hba) or die "rename $hba: $!";
	$node->reload;
	$node->safe_psql($db, $sql);
	return ($role, $password);
}

# SQL that creates a login service taking $seconds per login.  svc_login(uid)
# issues tok-UID-1, tok-UID-2, ... and logs every token it issued in
# svc_login_log; a new login squeezes the previous token out, so
# svc_validate(uid, credential) accepts only the newest.
sub login_service_sql
{
	my ($seconds) = @_;
	return qq{
	CREATE TABLE svc_token (user_id bigint PRIMARY KEY, token text NOT NULL, n integer NOT NULL);
	CREATE TABLE svc_login_log (user_id bigint NOT NULL, token text NOT NULL);
	CREATE FUNCTION svc_login(uid bigint) RETURNS text LANGUAGE plpgsql AS \$\$
	DECLARE
		issued text;
	BEGIN
		PERFORM pg_sleep($seconds);	-- the service is slow
		INSERT INTO svc_token AS t VALUES (uid, 'tok-' || uid || '-1', 1)
			ON CONFLICT (user_id) DO UPDATE
			SET n = t.n + 1, token = 'tok-' || uid || '-' || (t.n + 1)
			RETURNING token INTO issued;
		INSERT INTO svc_login_log VALUES (uid, issued);
		RETURN issued;
	END \$\$;
	CREATE FUNCTION svc_validate(uid bigint, credential text) RETURNS boolean
	LANGUAGE sql AS \$\$
		SELECT EXISTS (SELECT FROM svc_token WHERE user_id = uid AND token = credential)
	\$\$;
};
}

# SQL that creates the ledger and the two counters that check_ledger checks:
# 'plain', and 'hot' with 16 slots.  A ledger row is (batch, client, n,
# hot delta): transaction n of a client in one batch of load (a phase, a
# round).
sub ledger_sql
{
	return q{
	CREATE TABLE ledger (
		batch	integer NOT NULL,
		client	integer NOT NULL,
		n		integer NOT NULL,
		hot		bigint	NOT NULL,
		PRIMARY KEY (batch, client, n));
	SELECT turnstile.counter_create('plain');
	SELECT turnstile.counter_create('hot', 0, 16);
};
}

# Write to $file the pgbench script of the ledger's load: each transaction
# adds 1 to 'plain' and client_id + 1 to 'hot' (so that a lost or doubled
# increment of any client shows in the sum), and writes its ledger row, all
# committed or none.  pgbench numbers a client's transactions in n, and is
# given the batch with --define batch=N (and n=0).  With $rollback_every,
# every such transaction of a client rolls back instead.
sub write_ledger_script
{
	my ($file, $rollback_every) = @_;
	my $end = $rollback_every
	  ? "\\if :n % $rollback_every = 0\nROLLBACK;\n\\else\nCOMMIT;\n\\endif\n"
	  : "COMMIT;\n";
	PostgreSQL::Test::Utils::append_to_file($file, q{
\set n :n + 1
\set hot :client_id + 1
BEGIN;
SELECT turnstile.counter_incr('plain', 1);
SELECT turnstile.counter_incr('hot', :hot);
INSERT INTO ledger VALUES (:batch, :client_id, :n, :hot);
} . $end);
	return;
}

# Check a ledger of committed transactions, each of which added 1 to the
# counter 'plain' and its hot delta to the counter 'hot', against what the
# clients saw and against the counters.  $acked and $maybe map a transaction's
# key to its hot delta: $acked the transactions whose commit a client saw,
# $maybe those in flight when the client was cut off, which may or may not
# have committed.  $ledger_sql returns "key|hot delta" rows.  Every test name
# starts with $what.  Returns the ledger's plain count, the counters' values
# and the plain counter's version.
sub check_ledger
{
	my ($node, $what, $acked, $maybe, $ledger_sql) = @_;

	my %ledger = map { my ($key, $hot) = split /\|/; ($key => $hot) }
	  split /\n/, $node->safe_psql('postgres', $ledger_sql);
	my @lost = grep { !exists $ledger{$_} } sort keys %$acked;
	my @invented = grep { !exists $acked->{$_} && !exists $maybe->{$_} } sort keys %ledger;
	my $unacked = grep { exists $maybe->{$_} } keys %ledger;
	is(scalar(@lost), 0, "$what: every acknowledged transaction is in the ledger")
	  or diag "lost: @lost[0 .. ($#lost < 9 ? $#lost : 9)]";
	is(scalar(@invented), 0, "$what: the ledger holds no transaction that was not attempted")
	  or diag "invented: @invented[0 .. ($#invented < 9 ? $#invented : 9)]";

	my ($acked_plain, $acked_hot) = (scalar(keys %$acked), 0);
	$acked_hot += $_ foreach values %$acked;
	my ($attempted_plain, $attempted_hot) = ($acked_plain + scalar(keys %$maybe), $acked_hot);
	$attempted_hot += $_ foreach values %$maybe;
	my ($ledger_plain, $ledger_hot) = (scalar(keys %ledger), 0);
	$ledger_hot += $_ foreach values %ledger;

	my ($plain, $hot, $hot_view, $version) = split /\|/, $node->safe_psql('postgres', q{
		SELECT turnstile.counter_get('plain'), turnstile.counter_get('hot'),
			   (SELECT value FROM turnstile.counters WHERE name = 'hot'),
			   (SELECT version FROM turnstile.counter_info('plain'))});
	note "$what: plain $plain (acknowledged $acked_plain, attempted $attempted_plain), "
	  . "hot $hot (acknowledged $acked_hot, attempted $attempted_hot); "
	  . "$unacked in-flight transactions committed without the client hearing of it";

	cmp_ok($plain, '>=', $acked_plain, "$what: plain counter >= acknowledged increments");
	cmp_ok($plain, '<=', $attempted_plain, "$what: plain counter <= attempted increments");
	cmp_ok($hot, '>=', $acked_hot, "$what: hot counter >= acknowledged increments");
	cmp_ok($hot, '<=', $attempted_hot, "$what: hot counter <= attempted increments");
	is($plain, $ledger_plain, "$what: plain counter equals the committed increments");
	is($hot, $ledger_hot, "$what: hot counter equals the committed increments");
	is($hot_view, $hot, "$what: the counters view agrees");
	return ($ledger_plain, $plain, $hot, $version);
}

# Count, per client, the transactions that pgbench --log wrote to the files
# $prefix.* (one line "client_id transaction_no time script_no time_epoch
# time_us" each), into $ended->{"$tag:$client"}, starting every one of the
# $clients clients at 0.  Returns how many of them failed (no time given).
sub count_pgbench_log
{
	my ($prefix, $tag, $clients, $ended) = @_;
	my $failed = 0;

	$ended->{"$tag:$_"} = 0 foreach 0 .. $clients - 1;
	foreach my $file (glob("$prefix.*"))
	{
		foreach my $line (split /\n/, PostgreSQL::Test::Utils::slurp_file($file))
		{
			my ($client, undef, $time) = split / /, $line;
			$ended->{"$tag:$client"}++;
			$failed++ unless $time =~ /^\d+$/;
		}
	}
	return $failed;
}

1;
