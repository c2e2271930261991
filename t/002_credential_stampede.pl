# A stampede on credential_get: many real clients ask at once for a user whose
# credential has expired (and was squeezed out, so validate says no).  The
# login service counts its logins and takes a while to answer, so the callers
# pile up behind the one that refreshes.  Exactly one login must happen per
# user, every caller must get the same credential, and nobody may wait much
# longer than the one login took.  Both propagations: the refresh inside the
# first caller's transaction, and in a background worker's.
#
# Then many users at once, far more than there are background worker slots:
# 64 callers on 64 expired users, and 200 callers over 40 users.  Every
# refresh succeeds, with exactly one login per user.
#
# All of it twice: on a stock server (max_worker_processes = 8, nothing
# preloaded: a worker per refresh, waiting for a slot when none is free),
# and with pg_turnstile in shared_preload_libraries (the refresh pool).  Only
# max_connections is raised, to let 200 clients in at once.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use FindBin;
use lib $FindBin::RealBin;
use TurnstileTest;

my $login_seconds = 0.2;
my $node;

# Age every cached credential past its ttl, and squeeze it out at the service
# so that validate says no and a new login is needed.
sub expire_and_squeeze
{
	$node->safe_psql('postgres', q{
		UPDATE turnstile.credential SET validated_at = validated_at - interval '2 hours';
		UPDATE svc_token SET token = token || '-squeezed';
		TRUNCATE svc_login_log, got;
	});
}

# Each client asks once, for user (client_id % users) + 1, and records what it
# got and how long the call took.
sub stampede
{
	my ($clients, $users, $name) = @_;
	$node->pgbench(
		"--no-vacuum --client=$clients --jobs=2 --transactions=1",
		0,
		[qr{processed: $clients/$clients}],
		[qr{^$}],
		$name,
		{
			"002_" . ($name =~ s{\W+}{_}gr) => qq{
\\set uid :client_id % $users + 1
INSERT INTO got SELECT :uid, turnstile.credential_get(:uid, 'test'), clock_timestamp() - statement_timestamp();
}
		});
}

# The scenarios on one server; $how names it in the test names.
sub run_on
{
	my ($how, $preload) = @_;

	$node = PostgreSQL::Test::Cluster->new($preload ? 'stampede_pool' : 'stampede');
	$node->init(extra => [ '-E', 'UTF8', '--no-locale' ]);
	$node->append_conf('postgresql.conf', "max_connections = 250\n");
	$node->append_conf('postgresql.conf', "shared_preload_libraries = 'pg_turnstile'\n")
	  if $preload;
	$node->start;
	is($node->safe_psql('postgres', 'SHOW max_worker_processes'), '8',
		"$how: max_worker_processes is the default");

	$node->safe_psql('postgres', login_service_sql($login_seconds));
	$node->safe_psql('postgres', qq{
		CREATE EXTENSION pg_turnstile;
		CREATE TABLE got (user_id bigint, credential text, waited interval);
	});

	foreach my $propagation ('required', 'requires_new')
	{
		$node->safe_psql('postgres', qq{
			SELECT turnstile.realm_drop('test');
			SELECT turnstile.realm_set('test', 'svc_login(bigint)', 'svc_validate(bigint,text)',
									   ttl => '1 hour', propagation => '$propagation');
		});

		# 1. one user, 64 clients
		$node->safe_psql('postgres', q{SELECT turnstile.credential_get(1, 'test')});
		expire_and_squeeze();
		stampede(64, 1, "$how, $propagation: 64 clients on one expired user");

		is($node->safe_psql('postgres', 'SELECT count(*) FROM svc_login_log'),
			'1', "$how, $propagation: one login for 64 callers");
		is($node->safe_psql('postgres', 'SELECT count(DISTINCT credential) || \' \' || count(*) FROM got'),
			'1 64', "$how, $propagation: all 64 callers got the same credential");
		is($node->safe_psql('postgres',
				q{SELECT count(*) FROM got g JOIN svc_login_log l ON l.user_id = g.user_id AND l.token = g.credential}),
			'64', "$how, $propagation: and it is the credential the login issued");
		my $slowest = $node->safe_psql('postgres',
			q{SELECT extract(epoch FROM max(waited)) FROM got});
		note sprintf('%s, %s: 64 clients, 1 login of %.3f s; slowest caller waited %.3f s',
			$how, $propagation, $login_seconds, $slowest);
		cmp_ok($slowest, '<', 2 * $login_seconds + 1.0,
			"$how, $propagation: nobody waited much longer than one login");
		# the callers really did arrive while the login ran, and queued behind it
		cmp_ok($node->safe_psql('postgres',
				qq{SELECT count(*) FROM got WHERE waited > interval '@{[$login_seconds / 2]} s'}),
			'>=', 16, "$how, $propagation: at least 16 callers waited for the refresher");

		# 2. sixteen users, eight clients each.  Their credentials are
		# stored with credential_set rather than logged in one by one (which
		# would take the service's 0.2 s each): the service never issued
		# them, so, expired, they fail validate as a squeezed-out token does,
		# and each user's refresh logs in.
		$node->safe_psql('postgres', q{
			SELECT turnstile.credential_set(u, 'seed-' || u, 'test') FROM generate_series(1, 16) u});
		expire_and_squeeze();
		stampede(128, 16, "$how, $propagation: 16 users x 8 clients");

		is($node->safe_psql('postgres',
				'SELECT count(*) || \' \' || count(DISTINCT user_id) FROM svc_login_log'),
			'16 16', "$how, $propagation: one login per user");
		is($node->safe_psql('postgres', q{
				SELECT count(*) FROM (SELECT user_id FROM got GROUP BY user_id
									  HAVING count(*) = 8 AND count(DISTINCT credential) = 1) u}),
			'16', "$how, $propagation: the 8 callers of each user got one credential");
		$slowest = $node->safe_psql('postgres',
			q{SELECT extract(epoch FROM max(waited)) FROM got});
		note sprintf('%s, %s: 128 clients over 16 users; slowest caller waited %.3f s',
			$how, $propagation, $slowest);

		# 3. and 4. more users refreshing at once than there are worker slots
		foreach my $case ([ 64, 64 ], [ 200, 40 ])
		{
			my ($clients, $users) = @$case;
			my $each = $clients / $users;

			$node->safe_psql('postgres', qq{
				SELECT turnstile.credential_set(u, 'seed-' || u, 'test')
				  FROM generate_series(1, $users) u});
			expire_and_squeeze();
			stampede($clients, $users, "$how, $propagation: $clients clients over $users users");
			is($node->safe_psql('postgres',
					'SELECT count(*) || \' \' || count(DISTINCT user_id) FROM svc_login_log'),
				"$users $users", "$how, $propagation, $clients clients over $users users: one login per user");
			is($node->safe_psql('postgres', qq{
					SELECT count(*) FROM (SELECT g.user_id FROM got g
										   JOIN svc_login_log l ON l.user_id = g.user_id
															   AND l.token = g.credential
										  GROUP BY g.user_id HAVING count(*) = $each) u}),
				$users, "$how, $propagation, $clients clients over $users users: every caller got its user's new credential");
			$slowest = $node->safe_psql('postgres',
				q{SELECT extract(epoch FROM max(waited)) FROM got});
			note sprintf('%s, %s: %d clients over %d users; slowest caller waited %.3f s',
				$how, $propagation, $clients, $users, $slowest);
		}
	}

	is($node->safe_psql('postgres', 'SELECT count(*) FROM turnstile.locks'),
		'0', "$how: no turnstile lock left behind");
	# the refreshes above went to the pool when there is one, and only then
	is($node->safe_psql('postgres', q{
			SELECT count(*) > 0 FROM pg_stat_activity
			 WHERE backend_type = 'pg_turnstile refresh pool'}),
		$preload ? 't' : 'f', "$how: refresh pool workers " . ($preload ? 'served' : 'absent'));
	$node->stop;
}

run_on('stock server', 0);
run_on('preloaded', 1);

done_testing();
