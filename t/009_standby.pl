# A streaming standby.
#
# On the standby every reader works and returns what the primary committed:
# counter_get, counter_info, the views, and credential_get of a fresh
# credential (and of one inside its refresh-ahead window, which a standby
# cannot refresh but may still use).  Every change fails with SQLSTATE 25006,
# a message naming what would have changed, and a hint that this is a
# standby: counter writes, credential_set and credential_invalidate,
# credential_get of an expired, invalidated or missing credential, and the
# realm functions.  A read-only transaction on the primary fails the same
# way, without the hint.  What the primary commits later shows up on the
# standby.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $primary = PostgreSQL::Test::Cluster->new('primary');
$primary->init(allows_streaming => 1, extra => [ '-E', 'UTF8', '--no-locale' ]);
$primary->start;

# A login that numbers each user's logins: tok-<user>-<n>.
$primary->safe_psql('postgres', q{
	CREATE EXTENSION pg_turnstile;
	CREATE ROLE app;
	CREATE TABLE svc_login_log (user_id bigint NOT NULL, token text NOT NULL);
	CREATE FUNCTION svc_login(uid bigint) RETURNS text LANGUAGE plpgsql AS $$
	DECLARE
		issued text;
	BEGIN
		issued := 'tok-' || uid || '-' ||
			(SELECT count(*) + 1 FROM svc_login_log WHERE user_id = uid);
		INSERT INTO svc_login_log VALUES (uid, issued);
		RETURN issued;
	END $$;
	SELECT turnstile.realm_set('r', 'svc_login(bigint)', ttl => '1 hour',
							   refresh_ahead => '10 minutes');

	-- user 1 fresh, 2 expired, 3 inside the refresh-ahead window, 4 invalidated
	SELECT turnstile.credential_get(u, 'r') FROM generate_series(1, 4) u;
	UPDATE turnstile.credential SET validated_at = validated_at - interval '2 hours'
	 WHERE user_id = 2;
	UPDATE turnstile.credential SET validated_at = validated_at - interval '51 minutes'
	 WHERE user_id = 3;
	SELECT turnstile.credential_invalidate(4, 'r');

	SELECT turnstile.counter_create('c', 5);
	SELECT turnstile.counter_create('hot', 0, 4);
	SELECT turnstile.counter_incr('hot', g) FROM generate_series(1, 10) g;
});

$primary->backup('backup');
my $standby = PostgreSQL::Test::Cluster->new('standby');
$standby->init_from_backup($primary, 'backup', has_streaming => 1);
$standby->start;
$primary->wait_for_catchup($standby);

is($standby->safe_psql('postgres', 'SELECT pg_is_in_recovery()'), 't',
	'the standby is in recovery');

#
# Readers on the standby
#
is($standby->safe_psql('postgres', q{SELECT turnstile.counter_get('c')}),
	'5', 'standby: counter_get');
is($standby->safe_psql('postgres', q{SELECT turnstile.counter_get('hot')}),
	'55', 'standby: counter_get of a hot counter');
is($standby->safe_psql('postgres', q{SELECT turnstile.counter_get('nope') IS NULL}),
	't', 'standby: counter_get of a missing counter');
foreach my $reader (q{SELECT * FROM turnstile.counter_info('c')},
	q{SELECT * FROM turnstile.counter_info('hot')},
	'SELECT * FROM turnstile.counters',
	'SELECT * FROM turnstile.credential_status')
{
	is($standby->safe_psql('postgres', $reader),
		$primary->safe_psql('postgres', $reader),
		"standby: $reader as on the primary");
}
is($standby->safe_psql('postgres', q{
		SELECT string_agg(user_id || ' ' || status, ', ' ORDER BY user_id)
		  FROM turnstile.credential_status}),
	'1 fresh, 2 expired, 3 refresh_due, 4 invalidated',
	'standby: the credentials are in every state');
is($standby->safe_psql('postgres', q{SELECT turnstile.credential_get(1, 'r')}),
	'tok-1-1', 'standby: credential_get of a fresh credential');
is($standby->safe_psql('postgres', q{SELECT turnstile.credential_get(3, 'r')}),
	'tok-3-1', 'standby: credential_get inside the refresh-ahead window uses the valid one');
is($standby->safe_psql('postgres', 'SELECT count(*) FROM turnstile.locks'),
	'0', 'standby: turnstile.locks');

#
# Changes on the standby: 25006, naming what would change, with a hint.
#
my @changes = (
	[ q{SELECT turnstile.counter_incr('c')}, 'counter "c"' ],
	[ q{SELECT turnstile.counter_incr('hot')}, 'counter "hot"' ],
	[ q{SELECT turnstile.counter_decr('c', 2)}, 'counter "c"' ],
	[ q{SELECT turnstile.counter_incr('c', 1, 5)}, 'counter "c"' ],
	[ q{SELECT * FROM turnstile.counter_cas('c', 5, 6)}, 'counter "c"' ],
	[ q{SELECT turnstile.counter_set('c', 0)}, 'counter "c"' ],
	[ q{SELECT turnstile.counter_create('new')}, 'counter "new"' ],
	[ q{SELECT turnstile.counter_drop('c')}, 'counter "c"' ],
	[ q{SELECT turnstile.credential_set(1, 'tok-other', 'r')},
		'the credential of user 1 in realm "r"' ],
	[ q{SELECT turnstile.credential_invalidate(1, 'r')},
		'the credential of user 1 in realm "r"' ],
	[ q{SELECT turnstile.credential_get(2, 'r')},
		'the credential of user 2 in realm "r"' ],
	[ q{SELECT turnstile.credential_get(4, 'r')},
		'the credential of user 4 in realm "r"' ],
	[ q{SELECT turnstile.credential_get(9, 'r')},
		'the credential of user 9 in realm "r"' ],
	[ q{SELECT turnstile.realm_set('r', 'svc_login(bigint)')}, 'realm "r"' ],
	[ q{SELECT turnstile.realm_set('s', 'svc_login(bigint)')}, 'realm "s"' ],
	[ q{SELECT turnstile.realm_drop('r')}, 'realm "r"' ],
	[ q{SELECT turnstile.realm_grant('r', 'app')}, 'realm "r"' ],
	[ q{SELECT turnstile.realm_revoke('r', 'app')}, 'realm "r"' ],);

foreach my $change (@changes)
{
	my ($sql, $what) = @$change;
	my ($ret, $stdout, $stderr) =
	  $standby->psql('postgres', "\\set VERBOSITY verbose\n$sql;");
	like($stderr,
		qr/^psql:<stdin>:2: ERROR:  25006: cannot change \Q$what\E in a read-only transaction\nHINT:  This server is a standby; make the change on the primary\.\nLOCATION:  /,
		"standby: $sql fails with 25006");
}

# A read-only transaction on the primary: the same error, without the hint.
my ($ret, $stdout, $stderr) = $primary->psql('postgres', q{
\set VERBOSITY verbose
BEGIN READ ONLY;
SELECT turnstile.counter_incr('c');
});
like($stderr,
	qr/^psql:<stdin>:4: ERROR:  25006: cannot change counter "c" in a read-only transaction\nLOCATION:  /,
	'primary, read-only transaction: 25006 without the standby hint');
($ret, $stdout, $stderr) = $primary->psql('postgres', q{
SET default_transaction_read_only = on;
SELECT turnstile.credential_get(2, 'r');
});
like($stderr,
	qr/ERROR:  cannot change the credential of user 2 in realm "r" in a read-only transaction$/,
	'primary, read-only transaction: an expired credential is not refreshed');

# Nothing changed, on either side.
my $state = q{
	SELECT (SELECT string_agg(name || '=' || value || '/' || version, ' ' ORDER BY name)
			  FROM turnstile.counters),
		   (SELECT string_agg(user_id || ' ' || status || ' ' || logins, ', ' ORDER BY user_id)
			  FROM turnstile.credential_status),
		   (SELECT count(*) FROM svc_login_log)};
my $unchanged = 'c=5/1 hot=55/11|1 fresh 1, 2 expired 1, 3 refresh_due 1, 4 invalidated 1|4';
is($primary->safe_psql('postgres', $state), $unchanged, 'primary: nothing changed');
is($standby->safe_psql('postgres', $state), $unchanged, 'standby: nothing changed');

# What the primary commits reaches the standby's readers.
$primary->safe_psql('postgres', q{
	SELECT turnstile.counter_incr('c', 10);
	SELECT turnstile.credential_get(2, 'r');
});
$primary->wait_for_catchup($standby);
is($standby->safe_psql('postgres', q{SELECT turnstile.counter_get('c')}),
	'15', 'standby: counter_get sees the increment the primary committed');
is($standby->safe_psql('postgres', q{SELECT turnstile.credential_get(2, 'r')}),
	'tok-2-2', 'standby: credential_get returns the credential the primary refreshed');

$standby->stop;

$primary->stop;
done_testing();
