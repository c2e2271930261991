# Hostile input.  Every SQL function of the extension, as pg_proc lists it,
# is called with generated arguments: NULLs, empty, over-long, multibyte and
# 1 MB strings, quotes, backslashes and control characters, invalid UTF-8,
# bigint and integer extremes, zero, negative and huge intervals, functions
# of the wrong shape or that do not exist as login and validate, and realms
# whose login or validate returns NULL or an empty string, raises, sleeps
# past statement_timeout, recurses, or drops itself.  The calls are every
# single-argument variation of a valid baseline call, the cross product of
# users and realms for credential_get, random pairs of variations, and a
# sample run in read-only, REPEATABLE READ, SERIALIZABLE and unprivileged
# transactions.
#
# Each call must either succeed with a correct result (checked against the
# tables) or fail with a SQLSTATE the call's arguments and context allow; a
# call with a bad argument (a NULL, a name of 0 or 201 characters, ...) must
# fail with that argument's SQLSTATE.  After a failed call the extension's
# tables must be exactly as before: no committed row changed (ctid and xmin
# of every row), except that a failed refresh in a realm with propagation
# 'requires_new' records the failure by design (then the rest is compared).
#
# Then, one at a time: realms dropped in the middle of a refresh (by the
# login function itself, and by another session, also re-registering another
# realm that reuses the realm id), a ttl or retry_after that takes the
# expiry past the timestamp range, a hot counter whose slots overflow, and
# the failure record of 'requires_new', and invalid UTF-8 that does reach the
# functions, in a SQL_ASCII database.  Then what the extension looks up again
# at run time, changed under it: a realm's login and validate replaced by
# functions of another shape (integer, bytea or text results, an aggregate, a
# procedure), the realm's registering role dropped, the extension's tables
# and result types altered, logins inside security-restricted operations
# (CREATE INDEX, REFRESH MATERIALIZED VIEW, ANALYZE), and DROP and CREATE
# EXTENSION again and again under four incrementing sessions.  At the end the
# server must still answer, and its log must show no crash.
#
# HOSTILE_SEED picks the random pairs and samples (the default is fixed, so
# that runs are repeatable); a failing call is reported with its statement.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $seed = $ENV{HOSTILE_SEED} // 20261121;
srand($seed);
note "HOSTILE_SEED=$seed";

my $pairs_per_function = 80;	# random pairs of variations per function
my $context_samples = 8;		# variations per function in each context

my $node = PostgreSQL::Test::Cluster->new('hostile');
$node->init(extra => [ '-E', 'UTF8', '--no-locale' ]);
$node->start;

my $int64_max = '9223372036854775807';
my $int64_min = '-9223372036854775808';

#
# The login service.  Every provider is registered once per propagation, in
# a realm named h_<kind>_required or h_<kind>_requires_new.
#
$node->safe_psql('postgres', q{
	CREATE EXTENSION pg_turnstile;
	CREATE ROLE h_nobody;		-- no grant at all
	CREATE SEQUENCE h_seq;
	CREATE SEQUENCE h_raise_calls;

	CREATE FUNCTION h_login_ok(uid bigint) RETURNS text
		LANGUAGE sql AS $$ SELECT 'ok-' || uid || '-' || nextval('h_seq') $$;
	CREATE FUNCTION h_login_null(uid bigint) RETURNS text
		LANGUAGE sql AS $$ SELECT NULL::text $$;
	CREATE FUNCTION h_login_empty(uid bigint) RETURNS text
		LANGUAGE sql AS $$ SELECT ''::text $$;
	CREATE FUNCTION h_login_raise(uid bigint) RETURNS text
	LANGUAGE plpgsql AS $$
	BEGIN
		PERFORM nextval('h_raise_calls');
		RAISE EXCEPTION 'login service refuses user % (100%% sure, %%s)', uid
			USING ERRCODE = 'ZL001', DETAIL = E'quote '' backslash \\ newline\n',
			      HINT = 'try again';
	END $$;
	CREATE FUNCTION h_login_sleep(uid bigint) RETURNS text
	LANGUAGE plpgsql AS $$
	BEGIN
		PERFORM pg_sleep(60);
		RETURN 'slept-' || uid;
	END $$;
	CREATE FUNCTION h_login_huge(uid bigint) RETURNS text
		LANGUAGE sql AS $$ SELECT repeat('z', 1048576) || uid || '-' || nextval('h_seq') $$;
	CREATE FUNCTION h_login_recurse_required(uid bigint) RETURNS text
		LANGUAGE sql AS $$ SELECT turnstile.credential_get(uid, 'h_recurse_required') $$;
	CREATE FUNCTION h_login_recurse_requires_new(uid bigint) RETURNS text
		LANGUAGE sql AS $$ SELECT turnstile.credential_get(uid, 'h_recurse_requires_new') $$;
	CREATE FUNCTION h_login_dropself_required(uid bigint) RETURNS text
	LANGUAGE plpgsql AS $$
	BEGIN
		DROP FUNCTION h_login_dropself_required(bigint);
		RETURN 'dropped-' || uid;
	END $$;
	CREATE FUNCTION h_login_dropself_requires_new(uid bigint) RETURNS text
	LANGUAGE plpgsql AS $$
	BEGIN
		DROP FUNCTION h_login_dropself_requires_new(bigint);
		RETURN 'dropped-' || uid;
	END $$;

	CREATE FUNCTION h_validate_ok(uid bigint, credential text) RETURNS boolean
		LANGUAGE sql AS $$ SELECT true $$;
	CREATE FUNCTION h_validate_null(uid bigint, credential text) RETURNS boolean
		LANGUAGE sql AS $$ SELECT NULL::boolean $$;
	CREATE FUNCTION h_validate_raise(uid bigint, credential text) RETURNS boolean
	LANGUAGE plpgsql AS $$
	BEGIN
		RAISE EXCEPTION 'validation service down' USING ERRCODE = 'ZV001';
	END $$;
	CREATE FUNCTION h_validate_dropself_required(uid bigint, credential text)
	RETURNS boolean LANGUAGE plpgsql AS $$
	BEGIN
		DROP FUNCTION h_validate_dropself_required(bigint, text);
		RETURN true;
	END $$;
	CREATE FUNCTION h_validate_dropself_requires_new(uid bigint, credential text)
	RETURNS boolean LANGUAGE plpgsql AS $$
	BEGIN
		DROP FUNCTION h_validate_dropself_requires_new(bigint, text);
		RETURN true;
	END $$;

	-- functions of the wrong shape for a realm
	CREATE FUNCTION h_wrong_int(uid integer) RETURNS text
		LANGUAGE sql AS $$ SELECT 'x' $$;
	CREATE FUNCTION h_wrong_varchar(uid bigint) RETURNS varchar
		LANGUAGE sql AS $$ SELECT 'x'::varchar $$;
	CREATE FUNCTION h_wrong_two(uid bigint, extra text) RETURNS text
		LANGUAGE sql AS $$ SELECT 'x' $$;
	CREATE FUNCTION h_wrong_set(uid bigint) RETURNS SETOF text
		LANGUAGE sql AS $$ SELECT 'x' $$;
	CREATE PROCEDURE h_wrong_proc(uid bigint) LANGUAGE sql AS $$ SELECT 1 $$;
	CREATE AGGREGATE h_wrong_agg(bigint) (SFUNC = int8pl, STYPE = bigint);
});

# kind => [login, validate, ttl, refresh_ahead, retry_after, SQLSTATEs that
# credential_get may raise in it besides the ones any call may]
my %kinds = (
	ok => [ 'h_login_ok', 'h_validate_ok', '1 hour', '0', '30 seconds', [] ],
	tiny => [ 'h_login_ok', 'h_validate_ok', '1 microsecond', '0', '30 seconds', [] ],
	relogin => [ 'h_login_ok', undef, '1 microsecond', '0', '30 seconds', [] ],
	ahead => [ 'h_login_ok', 'h_validate_ok', '1 hour', '59 minutes 59.9 seconds',
		'30 seconds', [] ],
	huge => [ 'h_login_huge', undef, '1 microsecond', '0', '30 seconds', [] ],
	null => [ 'h_login_null', undef, '1 hour', '0', '0', ['39004'] ],
	empty => [ 'h_login_empty', undef, '1 hour', '0', '30 seconds', ['39004'] ],
	raise => [ 'h_login_raise', undef, '1 hour', '0', '0', ['ZL001'] ],
	raiseblock => [ 'h_login_raise', undef, '1 hour', '0', '1 hour', ['ZL001'] ],
	sleep => [ 'h_login_sleep', undef, '1 hour', '0', '0', ['57014'] ],
	recurse => [ 'h_login_recurse_%p', undef, '1 hour', '0', '0', ['42P19'] ],
	dropself => [ 'h_login_dropself_%p', undef, '1 microsecond', '0', '0', ['42883'] ],
	vnull => [ 'h_login_ok', 'h_validate_null', '1 microsecond', '0', '0', [] ],
	vraise => [ 'h_login_ok', 'h_validate_raise', '1 microsecond', '0', '0', ['ZV001'] ],
	vdrop => [ 'h_login_ok', 'h_validate_dropself_%p', '1 microsecond', '0', '0',
		['42883'] ],);
my @propagations = ('required', 'requires_new');
my %realm_kind;		# realm name => [kind, propagation]
my @kind_realms;
foreach my $kind (sort keys %kinds)
{
	foreach my $p (@propagations)
	{
		my ($login, $validate, $ttl, $ahead, $retry) = @{ $kinds{$kind} };
		my $name = "h_${kind}_$p";
		s/%p/$p/ foreach ($login, $validate);
		$validate = defined $validate ? "'$validate(bigint,text)'" : 'NULL';
		$node->safe_psql('postgres', qq{
			SELECT turnstile.realm_set('$name', '$login(bigint)', $validate,
				ttl => '$ttl', refresh_ahead => '$ahead', retry_after => '$retry',
				propagation => '$p')});
		$realm_kind{$name} = [ $kind, $p ];
		push @kind_realms, $name;
	}
}

#
# Pools of hostile values, as SQL expressions, each with a class the
# expectations below are derived from.
#
my @text_hostile = (
	[ q{NULL::text}, 'null' ],
	[ q{''::text}, 'empty' ],
	[ q{'x'::text}, 'ok' ],
	[ q{' '::text}, 'ok' ],
	[ q{'default'::text}, 'ok' ],
	[ q{repeat('x', 200)}, 'ok' ],
	[ q{repeat('x', 201)}, 'long' ],
	[ q{repeat('é', 200)}, 'ok' ],
	[ q{repeat('é', 201)}, 'long' ],
	[ q{repeat('😀', 200)}, 'ok' ],
	[ q{repeat('😀', 201)}, 'long' ],
	[ q{repeat('x', 1048576)}, 'long' ],
	[ q{E'it''s a \\\\ "quoted" %s %n $1 '';--'}, 'ok' ],
	[ q{E'\\x01\\x02\\t\\r\\n\\x1b[31m\\x7f'}, 'ok' ],
	[ q{'DROP TABLE turnstile.realm; --'::text}, 'ok' ],
	[ q{E'\\xff\\xfe'}, 'badutf8' ],
	[ q{E'\\xc3'}, 'badutf8' ],
	[ q{convert_from('\\xc328'::bytea, 'UTF8')}, 'badutf8' ],);

# some realms have hostile names, so that calls with them get to a login;
# h_target is the realm the realm_* calls change
$node->safe_psql('postgres', qq{
	SELECT turnstile.realm_set('h_target', 'h_login_ok(bigint)');
	SELECT turnstile.realm_set(repeat('😀', 200), 'h_login_ok(bigint)',
		'h_validate_ok(bigint,text)', ttl => '1 microsecond');
	SELECT turnstile.realm_set($text_hostile[12][0], 'h_login_ok(bigint)',
		ttl => '1 microsecond');
	SELECT turnstile.realm_set($text_hostile[13][0], 'h_login_ok(bigint)',
		propagation => 'required');
});

# counters: plain, hot, and at the ends of the bigint range
$node->safe_psql('postgres', qq{
	SELECT turnstile.counter_create('h_plain', 5);
	SELECT turnstile.counter_create('h_hot', 0, 16);
	SELECT turnstile.counter_create('h_max', $int64_max);
	SELECT turnstile.counter_create('h_min', $int64_min);
	SELECT turnstile.counter_create('h_hot_max', $int64_max, 4);
});

my @counter_names = map { [ "'$_'::text", 'ok' ] } qw(h_plain h_hot h_max h_min h_hot_max);

my @bigints = (
	[ 'NULL::bigint', 'null' ],
	map { [ "'$_'::bigint", $_ ] } ('0', '-1', '1', $int64_max, $int64_min));
my @integers = (
	[ 'NULL::integer', 'null' ],
	(map { [ "'$_'::integer", 'ok' ] } ('1', '1024')),
	(map { [ "'$_'::integer", 'badslots' ] }
		  ('0', '-1', '1025', '2147483647', '-2147483648')));
# seconds as the server compares intervals (a month is 30 days)
my @intervals = (
	[ 'NULL::interval', 'null' ],
	[ q{'0'::interval}, 0 ],
	[ q{'-1 s'::interval}, -1 ],
	[ q{'1 s'::interval}, 1 ],
	[ q{'1 microsecond'::interval}, 1e-6 ],
	[ q{'1 mon -30 days'::interval}, 0 ],
	[ q{'100 years'::interval}, 100 * 360 * 86400 ],
	[ q{'-100 years'::interval}, -100 * 360 * 86400 ],
	# realm_set may refuse it; if it does not, see "a million years" below
	[ q{'1000000 years'::interval}, 1e6 * 360 * 86400, 'single' ],);
my @procs = (
	[ 'NULL::regprocedure', 'null' ],
	[ q{'-'::regprocedure}, 'oid0' ],
	[ q{4294967295::oid::regprocedure}, 'nosuch' ],
	[ q{'h_no_such_login(bigint)'::regprocedure}, 'nosuch' ],
	[ q{'h_login_ok(bigint)'::regprocedure}, 'login' ],
	[ q{'to_hex(bigint)'::regprocedure}, 'login' ],
	[ q{'h_login_null(bigint)'::regprocedure}, 'login' ],
	[ q{'h_login_raise(bigint)'::regprocedure}, 'login' ],
	[ q{'h_login_sleep(bigint)'::regprocedure}, 'login', 'single' ],
	[ q{'h_login_dropself_required(bigint)'::regprocedure}, 'login_gone', 'single' ],
	[ q{'h_validate_ok(bigint,text)'::regprocedure}, 'validate' ],
	[ q{'h_validate_raise(bigint,text)'::regprocedure}, 'validate' ],
	[ q{'h_validate_dropself_required(bigint,text)'::regprocedure},
		'validate_gone', 'single' ],
	[ q{'h_wrong_int(integer)'::regprocedure}, 'wrong' ],
	[ q{'h_wrong_varchar(bigint)'::regprocedure}, 'wrong' ],
	[ q{'h_wrong_two(bigint,text)'::regprocedure}, 'wrong' ],
	[ q{'h_wrong_set(bigint)'::regprocedure}, 'wrong' ],
	[ q{'h_wrong_proc(bigint)'::regprocedure}, 'wrong' ],
	[ q{'h_wrong_agg(bigint)'::regprocedure}, 'wrong' ],
	[ q{'pg_sleep(double precision)'::regprocedure}, 'wrong' ],);
my @roles = (
	[ 'NULL::regrole', 'null' ],
	[ q{'h_nobody'::regrole}, 'ok' ],
	[ q{current_user::regrole}, 'ok' ],
	[ q{'pg_monitor'::regrole}, 'ok' ],
	[ q{'-'::regrole}, 'oid0' ],
	[ q{'h_no_such_role'::regrole}, 'nosuchrole' ],);
my @propagation_values = (
	(map { [ $_->[0], $_->[1] =~ /^(null|badutf8)$/ ? $_->[1] : 'badprop' ] }
		  @text_hostile),
	[ q{'required'::text}, 'ok' ],
	[ q{'requires_new'::text}, 'ok' ],
	[ q{'REQUIRED'::text}, 'badprop' ],);
my @booleans = ([ 'NULL::boolean', 'null' ], [ 'true', 'ok' ], [ 'false', 'ok' ]);

# The SQLSTATEs a provider can cause, through a realm whose login a call may
# have changed (the realms with hostile names).
my @provider_states = ('39004', 'ZL001', 'ZV001', '42883', '42P19');

#
# The functions, from pg_proc, with their IN arguments.
#
my @functions;
foreach my $row (split /\n/, $node->safe_psql('postgres', q{
	SELECT p.oid::regprocedure, p.proname,
	       coalesce((SELECT string_agg(a.name || ':' || format_type(a.type, NULL), ',' ORDER BY a.n)
	                   FROM unnest(coalesce(p.proallargtypes, p.proargtypes::oid[]),
	                               p.proargnames,
	                               coalesce(p.proargmodes,
	                                        array_fill('i'::"char", ARRAY[p.pronargs])))
	                        WITH ORDINALITY AS a(type, name, mode, n)
	                  WHERE a.mode IN ('i', 'b')), ''),
	       p.proretset,
	       format_type(p.prorettype, NULL)
	  FROM pg_proc p
	 WHERE p.pronamespace = 'turnstile'::regnamespace
	 ORDER BY 1::text}))
{
	my ($signature, $name, $args, $retset, $rettype) = split /\|/, $row;
	push @functions, {
		signature => $signature,
		name => $name,
		args => [ map { [ split /:/ ] } split /,/, $args ],
		retset => $retset eq 't',
		rettype => $rettype };
}
ok(scalar(@functions) >= 17, 'pg_proc lists the functions ('
	  . scalar(@functions) . ')');

# Arguments that may be NULL: "no validate", "any credential", "no bound".
my %nullable = ('realm_set.validate' => 1, 'credential_invalidate.credential' => 1,
	map { $_ => 1 } qw(counter_create.lower counter_create.upper counter_bounds.lower
	  counter_bounds.upper));

# Valid values of each argument, for the baseline call.
my %baseline = (
	'realm_set.login' => q{'h_login_ok(bigint)'::regprocedure},
	'realm_set.validate' => q{'h_validate_ok(bigint,text)'::regprocedure},
	'realm_set.ttl' => q{'1 hour'::interval},
	'realm_set.refresh_ahead' => q{'0'::interval},
	'realm_set.retry_after' => q{'30 seconds'::interval},
	'realm_set.propagation' => q{'required'::text},
	'credential_set.credential' => q{'cred'::text},
	'credential_invalidate.credential' => q{NULL::text},);
my %baseline_by_type = (
	'text' => q{'x'::text},
	'bigint' => q{'1'::bigint},
	'integer' => q{'1'::integer},
	'interval' => q{'1 hour'::interval},
	'regprocedure' => q{'h_login_ok(bigint)'::regprocedure},
	'regrole' => q{'h_nobody'::regrole},
	'boolean' => 'true',);

# The role an argument plays, from its function, name and type.
sub arg_role
{
	my ($fn, $arg, $type) = @_;
	my $fname = $fn->{name};

	return 'counter' if $type eq 'text' && $arg eq 'name' && $fname =~ /^counter_/;
	if ($type eq 'text' && $arg eq 'realm')
	{
		return $fname =~ /^credential_/ ? 'realm_use' : 'realm_admin';
	}
	return 'propagation' if $type eq 'text' && $arg eq 'propagation';
	return 'credential' if $type eq 'text' && $arg eq 'credential';
	return $type;
}

sub pool
{
	my ($role) = @_;
	return [ @text_hostile, @counter_names ] if $role eq 'counter';
	return [ @text_hostile, [ q{'h_target'::text}, 'ok' ] ] if $role eq 'realm_admin';
	return [ @text_hostile, map { [ "'$_'::text", 'ok' ] } @kind_realms ]
	  if $role eq 'realm_use';
	return \@propagation_values if $role eq 'propagation';
	return \@text_hostile if $role eq 'credential' || $role eq 'text';
	return \@bigints if $role eq 'bigint';
	return \@integers if $role eq 'integer';
	return \@intervals if $role eq 'interval';
	return \@procs if $role eq 'regprocedure';
	return \@roles if $role eq 'regrole';
	return \@booleans if $role eq 'boolean';
	return [];
}

foreach my $fn (@functions)
{
	my @roles_of_args;
	foreach my $a (@{ $fn->{args} })
	{
		my ($arg, $type) = @$a;
		my $role = arg_role($fn, $arg, $type);
		my $base = $baseline{"$fn->{name}.$arg"} // $baseline_by_type{$type};
		if ($role eq 'counter')
		{
			$base = q{'h_plain'::text};
		}
		elsif ($role eq 'realm_use')
		{
			$base = q{'h_ok_required'::text};
		}
		elsif ($role eq 'realm_admin')
		{
			$base = q{'h_target'::text};
		}
		diag("no pool of hostile values for $fn->{signature} argument $arg ($type)")
		  unless @{ pool($role) };
		push @roles_of_args, {
			arg => $arg,
			type => $type,
			role => $role,
			base => [ $base, 'ok' ],
			pool => pool($role) };
	}
	$fn->{arginfo} = \@roles_of_args;
}

#
# The SQLSTATEs a call may end with, and why:
#   22004  a NULL argument (never a silent NULL result)
#   22023  a name of 0 or over 200 characters, slots outside 1-1024, bad
#          realm settings (ttl, refresh_ahead, retry_after, propagation, a
#          login or validate of the wrong shape; a ttl or retry_after past a
#          limit, if realm_set has one), an empty credential
#   22021  invalid UTF-8: the server refuses the literal before any call
#   22003  a counter would leave the bigint range; counter_decr of the
#          smallest bigint, which cannot be negated
#   40001  the conditional counter_incr is out of sync
#   23514  a change would take a counter out of the bounds that an earlier
#          call gave it; bounds that exclude the counter's value
#   22023  (also) a lower bound above the upper one
#   42704  an unknown realm; a role name that does not exist
#   42883  a login or validate that does not exist (at parse time, by OID, or
#          dropped since realm_set)
#   39004  a login returned NULL or an empty string
#   42P19  a login asked for the credential it is producing
#   ZL001, ZV001  the test's own login and validate raised them
#   57014  a login slept past statement_timeout (only in the realms whose
#          login sleeps)
#   25006  a change in a READ ONLY transaction
#   25000  turnstile.isolation = 'serializable' outside SERIALIZABLE
#   42501  a role without any grant
# Each only where the call's arguments, realm and context can cause it.
# Not allowed anywhere: XX000 and every other internal error, 23xxx
# constraint violations of the extension's own tables, 22008 from a stored
# setting, 53000 (no refresh fails for want of a worker slot), 40P01.
#
# What a call may do, from its arguments and context.  Returns the SQLSTATEs
# it must fail with (if any argument is bad: one of them), the SQLSTATEs it
# may fail with otherwise, and whether a failure may leave a recorded
# refresh failure behind.
#
my %known = map { $_ => 1 } qw(counter_create counter_incr counter_decr
  counter_cas counter_get counter_set counter_info counter_drop counter_list
  counter_lock_key realm_set realm_drop realm_grant realm_revoke credential_get
  credential_set credential_invalidate credential_list counter_bounds
  counter_try_incr);
my %readonly_ok = map { $_ => 1 }
  qw(counter_get counter_info counter_list counter_lock_key credential_list credential_get);

sub expectations
{
	my ($fn, $vals, $ctx) = @_;
	my (%must, %may, %alt);
	my $recording = 0;
	my %by_arg;
	my $fname = $fn->{name};

	foreach my $i (0 .. $#{ $fn->{arginfo} })
	{
		my $info = $fn->{arginfo}[$i];
		my ($sql, $class) = @{ $vals->[$i] };
		my $key = "$fname.$info->{arg}";
		my $role = $info->{role};
		$by_arg{ $info->{arg} } = $vals->[$i];

		if ($class eq 'null')
		{
			$must{'22004'} = 1 unless $nullable{$key};
			next;
		}
		$must{'22021'} = 1 if $class eq 'badutf8';
		if ($role eq 'counter' || $role =~ /^realm_/)
		{
			$must{'22023'} = 1 if $class eq 'empty' || $class eq 'long';
		}
		$must{'22023'} = 1 if $key eq 'credential_set.credential' && $class eq 'empty';
		$must{'22023'} = 1 if $class eq 'badprop' || $class eq 'badslots';
		$must{'22003'} = 1 if $key eq 'counter_decr.delta' && $class eq $int64_min;
		if ($info->{type} eq 'regprocedure')
		{
			my $as = $info->{arg};
			$must{'42883'} = 1 if $class eq 'nosuch';
			$must{'42883'} = 1 if $class eq 'oid0' && $as eq 'login';
			$must{'22023'} = 1 if $class =~ /^validate/ && $as eq 'login';
			$must{'22023'} = 1 if $class =~ /^login/ && $as eq 'validate';
			$must{'22023'} = 1 if $class eq 'wrong';
			# dropped by its first call, after which the name does not resolve
			$alt{'42883'} = 1 if $class =~ /_gone$/;
		}
		if ($info->{type} eq 'regrole')
		{
			$must{'42704'} = 1 if $class eq 'nosuchrole';
			@alt{ '22023', '42704' } = (1, 1) if $class eq 'oid0';
		}
	}

	# realm_set's intervals, compared as the server compares them
	if ($fname eq 'realm_set')
	{
		my %base_seconds = (q{'1 hour'::interval} => 3600, q{'0'::interval} => 0,
			q{'30 seconds'::interval} => 30);
		my ($ttl, $ahead, $retry) = map {
			my ($sql, $class) = @{ $by_arg{$_} };
			$class eq 'ok' ? $base_seconds{$sql} : $class eq 'null' ? undef : $class
		} qw(ttl refresh_ahead retry_after);
		$must{'22023'} = 1 if defined $ttl && $ttl <= 0;
		$must{'22023'} = 1
		  if defined $ahead && ($ahead < 0 || (defined $ttl && $ahead >= $ttl));
		$must{'22023'} = 1 if defined $retry && $retry < 0;
		# a limit on how far ahead an expiry may lie is fine (see "a million
		# years" below for what must hold if there is none)
		my $century = 100 * 360 * 86400;
		$alt{'22023'} = 1
		  if (defined $ttl && $ttl >= $century) || (defined $retry && $retry >= $century);
	}

	# bounds with the lower one above the upper one are refused
	if ($fname eq 'counter_create' || $fname eq 'counter_bounds')
	{
		my ($lower, $upper) = map {
			my (undef, $class) = @{ $by_arg{$_} };
			$class eq 'ok' ? 1 : $class eq 'null' ? undef : $class
		} qw(lower upper);
		$must{'22023'} = 1 if defined $lower && defined $upper && $lower > $upper;
	}

	# what a call with good arguments may still raise
	if ($fname eq 'counter_incr' && @{ $fn->{args} } == 3)
	{
		@may{ '40001', '22003', '23514' } = (1, 1, 1);
	}
	elsif ($fname =~ /^counter_(incr|decr|cas|create)$/)
	{
		@may{ '22003', '23514' } = (1, 1);
	}
	elsif ($fname =~ /^counter_(get|info|try_incr)$/)
	{
		$may{'22003'} = 1;
	}
	elsif ($fname eq 'counter_set')
	{
		$may{'23514'} = 1;
	}
	elsif ($fname eq 'counter_bounds')
	{
		@may{ '22003', '23514', '42704' } = (1, 1, 1);
	}
	elsif ($fname =~ /^realm_(grant|revoke)$/)
	{
		$may{'42704'} = 1;
	}
	elsif ($fname =~ /^credential_(get|set|invalidate)$/)
	{
		my ($realm_sql) = @{ $by_arg{realm} };
		my ($realm) = $realm_sql =~ /^'(h_[a-z_]+)'::text$/;
		if (defined $realm && $realm_kind{$realm})
		{
			my ($kind, $p) = @{ $realm_kind{$realm} };
			if ($fname eq 'credential_get')
			{
				$may{$_} = 1 foreach @{ $kinds{$kind}[5] };
				$recording = $p eq 'requires_new';
			}
		}
		else
		{
			# a realm with a hostile name: missing, or registered by a
			# realm_set call with whatever login it was given
			$may{'42704'} = 1;
			if ($fname eq 'credential_get')
			{
				$may{$_} = 1 foreach @provider_states;
				$recording = 1;
			}
		}
	}
	elsif (!$known{$fname})
	{
		# a function this test does not know yet: the SQLSTATEs any call
		# of the extension may raise
		$may{$_} = 1 foreach ('22003', '22023', '42704', '40001', '23514');
	}

	# the transaction around the call
	my @parse_time = grep { $must{$_} } ('22021', '42883', '42704');
	if ($ctx eq 'readonly')
	{
		if ($readonly_ok{$fname})
		{
			$may{'25006'} = 1;
		}
		elsif ($known{$fname})
		{
			$must{'25006'} = 1;
		}
		else
		{
			$may{'25006'} = 1;
		}
	}
	elsif ($ctx eq 'serializable_outside')
	{
		$may{'25000'} = 1;
		$must{'25000'} = 1 if %must;
	}
	elsif ($ctx eq 'nobody')
	{
		# no USAGE on the schema: refused before any argument is checked,
		# unless the statement could not even be parsed
		%must = ('42501' => 1, map { $_ => 1 } @parse_time);
		%alt = ();
	}

	# an argument that may or may not be refused: one more SQLSTATE the call
	# may fail with, whatever else is wrong with it
	foreach my $state (keys %alt)
	{
		$may{$state} = 1;
		$must{$state} = 1 if %must;
	}

	return (\%must, \%may, $recording);
}

#
# The SQL of a call, the columns it is read into (\gset r_...), and the
# check of its result against the tables.  $a[i] is the i-th argument.
#
sub call_sql
{
	my ($fn, $vals) = @_;
	my @a = map { $_->[0] } @$vals;
	my $call = "turnstile.$fn->{name}(" . join(', ', @a) . ')';
	my $fname = $fn->{name};
	my ($select, $check);

	if ($fname eq 'counter_cas')
	{
		$select = "SELECT applied, coalesce(value::text, 'null') AS value FROM $call";
		$check = qq{CASE WHEN :'r_applied'::boolean
		     THEN h_num(:'r_value') = $a[2] AND h_counter_sum($a[0]) = $a[2]
		     ELSE coalesce(h_num(:'r_value'), 0) <> $a[1]
		          AND h_num(:'r_value') IS NOT DISTINCT FROM h_counter_sum($a[0]) END};
	}
	elsif ($fname eq 'counter_try_incr')
	{
		$select = "SELECT applied, value, applied_delta FROM $call";
		$check = qq{h_num(:'r_value') = h_counter_sum($a[0])
		     AND :'r_applied'::boolean = (:'r_applied_delta'::numeric = $a[1])};
	}
	elsif ($fname eq 'counter_info')
	{
		$select = "SELECT count(*) AS n, coalesce(max(value)::text, 'null') AS value FROM $call";
		$check = qq{CASE WHEN h_counter_sum($a[0]) IS NULL THEN :'r_n' = '0'
		     ELSE :'r_n' = '1' AND h_num(:'r_value') = h_counter_sum($a[0]) END};
	}
	elsif ($fn->{retset})
	{
		$select = "SELECT count(*) AS n FROM $call";
		$check = {
			counter_list => q{:'r_n'::bigint = (SELECT count(DISTINCT name) FROM turnstile.counter_slot)},
			credential_list => q{:'r_n'::bigint = (SELECT count(*) FROM turnstile.credential)},
		}->{$fname} // 'true';
	}
	elsif ($fn->{rettype} eq 'text')
	{
		$select = "SELECT coalesce(md5(v), 'null') AS m FROM (SELECT $call AS v) s";
		$check = $fname eq 'credential_get'
		  ? qq{:'r_m' <> 'null' AND :'r_m' <> md5('') AND :'r_m' = h_credential_md5($a[0], $a[1])}
		  : q{:'r_m' <> 'null'};
	}
	else
	{
		$select = "SELECT coalesce(v::text, 'null') AS v FROM (SELECT $call AS v) s";
		my %checks = (
			counter_create => qq{h_num(:'r_v') = h_counter_sum($a[0])},
			counter_incr => @a == 3
			? qq{h_num(:'r_v') = h_counter_sum($a[0]) AND h_num(:'r_v') = $a[2]::numeric + $a[1]}
			: qq{h_num(:'r_v') = h_counter_sum($a[0])},
			counter_decr => qq{h_num(:'r_v') = h_counter_sum($a[0])},
			counter_get => qq{h_num(:'r_v') IS NOT DISTINCT FROM h_counter_sum($a[0])},
			counter_set => qq{h_num(:'r_v') = $a[1] AND h_counter_sum($a[0]) = $a[1]},
			counter_drop => qq{:'r_v' <> 'null' AND h_counter_sum($a[0]) IS NULL},
			counter_bounds => qq{EXISTS (SELECT FROM turnstile.counter_info($a[0])
			     WHERE lower IS NOT DISTINCT FROM $a[1] AND upper IS NOT DISTINCT FROM $a[2]
			       AND value BETWEEN coalesce(lower, value) AND coalesce(upper, value))},
			counter_lock_key => q{:'r_v' <> 'null'},
			realm_drop => qq{:'r_v' <> 'null'
			     AND NOT EXISTS (SELECT FROM turnstile.realm WHERE name = $a[0])},
			credential_set => qq{h_credential_md5($a[0], $a[2]) = md5($a[1])},
			credential_invalidate => qq{:'r_v' = 'false' OR EXISTS (
			     SELECT FROM turnstile.credential c JOIN turnstile.realm r USING (realm_id)
			      WHERE r.name = $a[1] AND c.user_id = $a[0] AND c.invalidated)},);
		if ($fname eq 'realm_set')
		{
			$check = qq{EXISTS (SELECT FROM turnstile.realm
			     WHERE name = $a[0]
			       AND to_regprocedure(login::text) = $a[1]
			       AND to_regprocedure(validate::text)
			           IS NOT DISTINCT FROM nullif($a[2]::oid, 0)::regprocedure
			       AND ttl = $a[3] AND refresh_ahead = $a[4] AND retry_after = $a[5]
			       AND propagation = $a[6])};
		}
		else
		{
			$check = $checks{$fname} // q{:'r_v' IS NOT NULL};
		}
	}
	return ($select, $check);
}

my %context_sql = (
	plain => [ '', '' ],
	readonly => [ "BEGIN READ ONLY;\n", "COMMIT;\n" ],
	repeatable_read => [
		"BEGIN ISOLATION LEVEL REPEATABLE READ;\nSET LOCAL turnstile.isolation = 'repeatable read';\n",
		"COMMIT;\n"
	],
	serializable => [
		"BEGIN ISOLATION LEVEL SERIALIZABLE;\nSET LOCAL turnstile.isolation = 'serializable';\n",
		"COMMIT;\n"
	],
	serializable_outside =>
	  [ "BEGIN;\nSET LOCAL turnstile.isolation = 'serializable';\n", "COMMIT;\n" ],
	nobody => [ "BEGIN;\nSET LOCAL ROLE h_nobody;\n", "COMMIT;\n" ],);

# Generate the calls.
my @calls;
my $phase;
my %phase_calls;

sub add_call
{
	my ($fn, $vals, $ctx) = @_;
	my ($must, $may, $recording) = expectations($fn, $vals, $ctx);
	my ($select, $check) = call_sql($fn, $vals);
	my $slow = grep { $_->[0] =~ /h_sleep_/ } @$vals;
	$phase_calls{$phase}++;
	push @calls, {
		fn => $fn,
		ctx => $ctx,
		select => $select,
		check => $check,
		must => $must,
		may => $may,
		recording => $recording,
		slow => $slow };
}

sub baseline_vals
{
	my ($fn) = @_;
	return [ map { $_->{base} } @{ $fn->{arginfo} } ];
}

sub random_value
{
	my ($info) = @_;
	my @candidates = grep { !$_->[2] && $_->[0] !~ /h_sleep_/ } @{ $info->{pool} };
	return $candidates[ int(rand(@candidates)) ];
}

# realm_set and realm_drop last, so that they do not take away the realms
# with hostile names before the credential calls used them
my @ordered = sort {
	($a->{name} =~ /^realm_/ ? 1 : 0) <=> ($b->{name} =~ /^realm_/ ? 1 : 0)
	  || ($a->{name} eq 'realm_drop') <=> ($b->{name} eq 'realm_drop')
	  || $a->{signature} cmp $b->{signature}
} @functions;

# 1. the baseline, and every single-argument variation of it
foreach my $fn (@ordered)
{
	$phase = 'baseline and single variations';
	add_call($fn, baseline_vals($fn), 'plain');
	foreach my $i (0 .. $#{ $fn->{arginfo} })
	{
		foreach my $v (@{ $fn->{arginfo}[$i]{pool} })
		{
			my $vals = baseline_vals($fn);
			$vals->[$i] = $v;
			add_call($fn, $vals, 'plain');
		}
	}
	# 2. credential_get: every user with every realm, twice (the second
	# round finds what the first stored, and validates or refreshes it)
	if ($fn->{name} eq 'credential_get')
	{
		$phase = 'credential_get users x realms';
		foreach my $round (1, 2)
		{
			foreach my $realm (@{ $fn->{arginfo}[1]{pool} })
			{
				foreach my $user (@bigints)
				{
					# a login that sleeps is tried with two users only
					next
					  if $realm->[0] =~ /h_sleep_/
					  && $user->[1] ne '1'
					  && $user->[1] ne 'null';
					add_call($fn, [ $user, $realm ], 'plain');
				}
			}
		}
	}
}

# 3. random pairs of variations
$phase = 'random pairs';
foreach my $fn (@ordered)
{
	my $n = @{ $fn->{arginfo} };
	next if $n < 2 || $fn->{name} eq 'credential_get';
	for (1 .. $pairs_per_function)
	{
		my $i = int(rand($n));
		my $j = int(rand($n - 1));
		$j++ if $j >= $i;
		my $vals = baseline_vals($fn);
		$vals->[$i] = random_value($fn->{arginfo}[$i]);
		$vals->[$j] = random_value($fn->{arginfo}[$j]);
		add_call($fn, $vals, 'plain');
	}
}

# 4. the baseline and a sample of variations in each kind of transaction
$phase = 'in transactions of each kind';
foreach my $ctx (qw(readonly repeatable_read serializable serializable_outside nobody))
{
	foreach my $fn (@ordered)
	{
		add_call($fn, baseline_vals($fn), $ctx);
		my $n = @{ $fn->{arginfo} };
		next unless $n;
		for (1 .. $context_samples)
		{
			my $i = int(rand($n));
			my $vals = baseline_vals($fn);
			$vals->[$i] = random_value($fn->{arginfo}[$i]);
			add_call($fn, $vals, $ctx);
		}
	}
}

note scalar(@calls) . ' generated calls: '
  . join(', ', map { "$phase_calls{$_} $_" } sort keys %phase_calls);

#
# Helpers for the script: fingerprints of the extension's tables, the exact
# sum of a counter, a stored credential's md5, and the results table.
#
$node->safe_psql('postgres', q{
	-- every committed row of every table of the extension, by position and
	-- inserting transaction: any committed change shows
	CREATE FUNCTION h_fp() RETURNS text
	LANGUAGE plpgsql AS $$
	DECLARE
		t regclass;
		part text;
		acc text := '';
	BEGIN
		FOR t IN SELECT c.oid FROM pg_class c
		          WHERE c.relnamespace = 'turnstile'::regnamespace AND c.relkind = 'r'
		          ORDER BY c.relname
		LOOP
			EXECUTE format('SELECT string_agg(ctid::text || xmin::text, '','' ORDER BY ctid) FROM %s', t)
				INTO part;
			acc := acc || t::text || ':' || coalesce(part, '') || ';';
		END LOOP;
		RETURN md5(acc);
	END $$;
	-- the same, but of the credentials only what a refresh failure does not
	-- touch (failures, last_error, last_sqlstate, failed_at, version), and
	-- without the rows that hold nothing but a failure
	CREATE FUNCTION h_fp_core() RETURNS text
	LANGUAGE plpgsql AS $$
	DECLARE
		t regclass;
		part text;
		acc text := '';
	BEGIN
		FOR t IN SELECT c.oid FROM pg_class c
		          WHERE c.relnamespace = 'turnstile'::regnamespace AND c.relkind = 'r'
		            AND c.relname <> 'credential'
		          ORDER BY c.relname
		LOOP
			EXECUTE format('SELECT string_agg(ctid::text || xmin::text, '','' ORDER BY ctid) FROM %s', t)
				INTO part;
			acc := acc || t::text || ':' || coalesce(part, '') || ';';
		END LOOP;
		SELECT string_agg(concat_ws('/', c.realm_id, c.user_id, c.credential IS NULL,
		                            c.invalidated, c.issued_at, c.validated_at,
		                            c.logins, c.validations), ','
		                  ORDER BY c.realm_id, c.user_id)
		  INTO part
		  FROM turnstile.credential c
		 WHERE c.credential IS NOT NULL OR c.logins > 0 OR c.validations > 0 OR c.invalidated;
		RETURN md5(acc || coalesce(part, ''));
	END $$;
	CREATE FUNCTION h_counter_sum(name text) RETURNS numeric
		LANGUAGE sql AS $$ SELECT sum(value::numeric) FROM turnstile.counter_slot s WHERE s.name = $1 $$;
	CREATE FUNCTION h_num(v text) RETURNS numeric
		LANGUAGE sql AS $$ SELECT CASE WHEN v = 'null' THEN NULL ELSE v::numeric END $$;
	CREATE FUNCTION h_credential_md5(user_id bigint, realm text) RETURNS text
		LANGUAGE sql AS $$
		SELECT md5(c.credential) FROM turnstile.credential c JOIN turnstile.realm r USING (realm_id)
		 WHERE r.name = $2 AND c.user_id = $1 $$;
	-- per call: its SQLSTATE, the SQLSTATE of the COMMIT after it (if any),
	-- whether the tables are as before, and whether its result is right
	CREATE TABLE h_result (id integer PRIMARY KEY, sqlstate text NOT NULL,
	                       commit_sqlstate text NOT NULL, fp_same boolean,
	                       fp_core_same boolean, result_ok boolean);
	CREATE FUNCTION h_note(id integer, sqlstate text, commit_sqlstate text, fp text,
	                       fp_core text, result_ok boolean)
	RETURNS void LANGUAGE sql AS $$
		INSERT INTO h_result VALUES (id, sqlstate, commit_sqlstate, h_fp() = fp,
		                             fp_core = '' OR h_fp_core() = fp_core, result_ok)
	$$;
});

# The fingerprints see what they must: any committed change, and for
# h_fp_core() a credential's change but not a recorded refresh failure.
{
	$node->safe_psql('postgres',
		q{SELECT turnstile.credential_set(99, 'probe', 'h_ok_required')});
	my ($fp, $core) = split /\|/,
	  $node->safe_psql('postgres', 'SELECT h_fp(), h_fp_core()');
	$node->safe_psql('postgres', q{
		UPDATE turnstile.credential SET failures = failures + 1
		 WHERE user_id = 99 AND realm_id = (SELECT realm_id FROM turnstile.realm
		                                     WHERE name = 'h_ok_required')});
	my ($fp2, $core2) = split /\|/,
	  $node->safe_psql('postgres', 'SELECT h_fp(), h_fp_core()');
	ok($fp2 ne $fp && $core2 eq $core, 'fingerprints: a recorded failure shows in h_fp only');
	$node->safe_psql('postgres', q{SELECT turnstile.counter_incr('h_plain', 0)});
	my ($fp3, $core3) = split /\|/,
	  $node->safe_psql('postgres', 'SELECT h_fp(), h_fp_core()');
	ok($fp3 ne $fp2 && $core3 ne $core2, 'fingerprints: a counter change shows in both');
}

# One psql session runs every call as a statement of its own.
my $script = "\\o /dev/null\nSET statement_timeout = '20s';\n";
foreach my $id (0 .. $#calls)
{
	my $c = $calls[$id];
	my ($begin, $end) = @{ $context_sql{ $c->{ctx} } };
	my $fp_core = $c->{recording} ? 'h_fp_core()' : "''";
	$script .= "SELECT h_fp() AS fp, $fp_core AS fp_core \\gset\n";
	$script .= "SET statement_timeout = '500ms';\n" if $c->{slow};
	$script .= $begin;
	$script .= "$c->{select} \\gset r_\n";
	$script .= "\\set st :SQLSTATE\n";
	$script .= $end;
	$script .= $end ? "\\set ce :SQLSTATE\n" : "\\set ce 00000\n";
	$script .= "SET statement_timeout = '20s';\n" if $c->{slow};
	$script .= "SELECT :'st' = '00000' AS ok \\gset\n";
	$script .= "\\if :ok\n";
	$script .= "SELECT h_note($id, :'st', :'ce', :'fp', :'fp_core', ($c->{check}));\n";
	$script .= "\\else\n";
	$script .= "SELECT h_note($id, :'st', :'ce', :'fp', :'fp_core', NULL);\n";
	$script .= "\\endif\n";
}

my $started = time();
my ($ret, $stdout, $stderr) = $node->psql('postgres', $script,
	on_error_stop => 0, timeout => 600);
note sprintf('%d calls in %d s', scalar(@calls), time() - $started);
unlike($stderr, qr/server closed the connection|connection to server was lost/,
	'the generated calls: the session survives');

# Judge every call.
my %result;
foreach my $row (split /\n/, $node->safe_psql('postgres',
		'SELECT id, sqlstate, commit_sqlstate, fp_same, fp_core_same, result_ok FROM h_result'))
{
	my ($id, @rest) = split /\|/, $row;
	$result{$id} = \@rest;
}
my %failures;		# signature => [ messages ]
my %counted;
my %states;
foreach my $id (0 .. $#calls)
{
	my $c = $calls[$id];
	my $sig = $c->{fn}{signature};
	my $what = "[$c->{ctx}] $c->{select}";
	$counted{$sig}++;
	my $r = $result{$id};
	if (!$r)
	{
		push @{ $failures{$sig} }, "no result recorded for: $what";
		next;
	}
	my ($state, $commit_state, $fp_same, $fp_core_same, $result_ok) = @$r;
	$states{$state}++;
	my @must = sort keys %{ $c->{must} };
	if ($state eq '00000' && $commit_state ne '00000')
	{
		push @{ $failures{$sig} }, "succeeded, but its COMMIT failed with $commit_state: $what";
		next;
	}
	if ($state eq '00000')
	{
		push @{ $failures{$sig} }, "succeeded, but must fail with @must: $what"
		  if @must;
		push @{ $failures{$sig} }, "succeeded with a wrong result: $what"
		  if !@must && $result_ok ne 't';
		next;
	}
	if (@must)
	{
		push @{ $failures{$sig} }, "failed with $state, but must fail with @must: $what"
		  unless $c->{must}{$state};
	}
	elsif (!$c->{may}{$state})
	{
		my @may = sort keys %{ $c->{may} };
		push @{ $failures{$sig} },
		  "failed with $state, allowed: " . (@may ? "@may" : 'none') . ": $what";
	}
	# a failed refresh in a transaction of its own is recorded by design
	my $recorded = $c->{recording} && grep { $_ eq $state } @provider_states;
	push @{ $failures{$sig} }, "failed with $state and changed the tables: $what"
	  unless $fp_same eq 't' || ($recorded && $fp_core_same eq 't');
}
note 'SQLSTATEs seen: ' . join(', ', map { "$_ x$states{$_}" } sort keys %states);
foreach my $fn (@functions)
{
	my $sig = $fn->{signature};
	my @f = @{ $failures{$sig} // [] };
	ok(!@f, "$sig: " . ($counted{$sig} // 0) . ' calls, each allowed')
	  or diag(join("\n", @f[ 0 .. ($#f < 19 ? $#f : 19) ]),
		@f > 20 ? "\n... and " . (@f - 20) . ' more' : '');
}

# What the calls left behind is consistent: every counter has all its slots,
# no refresh worker is still running, no turnstile lock is held.
is($node->safe_psql('postgres', q{
	SELECT count(*) FROM (SELECT name FROM turnstile.counter_slot GROUP BY name
	                       HAVING count(*) <> min(slots) OR min(slots) <> max(slots)
	                           OR NOT bool_or(slot = 0)) broken}),
	'0', 'every counter has all its slots');
ok($node->poll_query_until('postgres', q{
	SELECT count(*) = 0 FROM pg_stat_activity WHERE backend_type = 'pg_turnstile refresh'}),
	'no refresh worker left running');
is($node->safe_psql('postgres', 'SELECT count(*) FROM turnstile.locks'),
	'0', 'no turnstile lock left');

#
# Run SQL and return its last statement's SQLSTATE and output.
#
sub sqlstate_of
{
	my ($sql) = @_;
	my ($rc, $out, $err) = $node->psql('postgres',
		"$sql\n\\echo SQLSTATE=:SQLSTATE", on_error_stop => 0);
	my ($state) = $out =~ /SQLSTATE=(\w+)\s*$/;
	$out =~ s/\n?SQLSTATE=\w+\s*$//;
	return ($state // 'none', $out, $err);
}

#
# 'requires_new': a failed login is recorded by design, and holds off the
# next attempts for retry_after with the same SQLSTATE, without a login.
#
{
	my $what = "failed refresh in a transaction of its own";
	my $calls = $node->safe_psql('postgres', 'SELECT last_value FROM h_raise_calls');
	my ($state) = sqlstate_of(q{SELECT turnstile.credential_get(77, 'h_raiseblock_requires_new');});
	is($state, 'ZL001', "$what: the login's SQLSTATE");
	is($node->safe_psql('postgres', q{
		SELECT status, failures,
		       last_error LIKE 'login of user 77 in realm "h_raiseblock_requires_new" failed: '
		                       || 'login service refuses user 77%',
		       blocked_until > now()
		  FROM turnstile.credential_status
		 WHERE realm = 'h_raiseblock_requires_new' AND user_id = 77}),
		'failed|1|t|t', "$what: recorded");
	($state) = sqlstate_of(q{SELECT turnstile.credential_get(77, 'h_raiseblock_requires_new');});
	is($state, 'ZL001', "$what: the next call gets the same SQLSTATE");
	is($node->safe_psql('postgres', 'SELECT last_value FROM h_raise_calls') - $calls, 1,
		"$what: ... without another login");
}

#
# A login that drops its own realm, for a user with and without a cached
# credential.  The call may return the credential or report the realm as
# gone (42704), nothing else; nothing is left behind for the dropped realm.
#
$node->safe_psql('postgres', q{
	CREATE FUNCTION h_login_droprealm(uid bigint) RETURNS text
	LANGUAGE plpgsql AS $$
	BEGIN
		PERFORM turnstile.realm_drop('h_droprealm');
		RETURN 'fresh-' || uid;
	END $$;
});
foreach my $p (@propagations)
{
	foreach my $cached (0, 1)
	{
		my $what = "login drops its own realm ($p, "
		  . ($cached ? 'a credential cached' : 'nothing cached') . ')';
		$node->safe_psql('postgres', qq{
			SELECT turnstile.realm_set('h_droprealm', 'h_login_droprealm(bigint)',
			                           propagation => '$p');
			SELECT turnstile.credential_set(1, 'old', 'h_droprealm'),
			       turnstile.credential_invalidate(1, 'h_droprealm')
			 WHERE $cached = 1;
		});
		my ($before, $before_core) = split /\|/,
		  $node->safe_psql('postgres', 'SELECT h_fp(), h_fp_core()');
		my ($state, $out) = sqlstate_of("SELECT turnstile.credential_get(1, 'h_droprealm');");
		ok($state eq '00000' || $state eq '42704',
			"$what: the credential or 42704 (got $state)");
		if ($state eq '00000')
		{
			is($out, 'fresh-1', "$what: the fresh credential");
			is($node->safe_psql('postgres',
					q{SELECT count(*) FROM turnstile.realm WHERE name = 'h_droprealm'}),
				'0', "$what: the realm is gone");
		}
		elsif ($p eq 'required')
		{
			is($node->safe_psql('postgres', 'SELECT h_fp()'), $before,
				"$what: nothing changed");
		}
		else
		{
			is($node->safe_psql('postgres', 'SELECT h_fp_core()'), $before_core,
				"$what: nothing changed but the failure record");
		}
		$node->safe_psql('postgres', q{SELECT turnstile.realm_drop('h_droprealm')});
	}
}

#
# Another session drops the realm while its login runs, and registers
# another realm, which may get the dropped realm's id.  The caller gets the
# credential or 42704; the other realm's users never get the dropped realm's
# credential.  The login waits on an advisory lock the test holds, so the
# drop comes while it runs (realm_drop may finish at once, or wait for the
# refresh).
#
$node->safe_psql('postgres', q{
	CREATE FUNCTION h_login_gated(uid bigint) RETURNS text
	LANGUAGE plpgsql AS $$
	BEGIN
		PERFORM pg_advisory_lock(4242);
		PERFORM pg_advisory_unlock(4242);
		RETURN 'from-the-dropped-realm-' || uid;
	END $$;
	CREATE FUNCTION h_login_other(uid bigint) RETURNS text
		LANGUAGE sql AS $$ SELECT 'from-the-other-realm-' || uid $$;
});
foreach my $p (@propagations)
{
	my $what = "realm dropped during its login ($p)";
	$node->safe_psql('postgres', qq{
		SELECT turnstile.realm_drop(name) FROM turnstile.realm;
		SELECT turnstile.realm_set('h_gated', 'h_login_gated(bigint)', propagation => '$p');
	});
	my $gate = $node->background_psql('postgres');
	$gate->query_safe('SELECT pg_advisory_lock(4242)');
	my $caller = $node->background_psql('postgres', on_error_stop => 0);
	$caller->query_until(qr/started/, q{
		\echo started
		SELECT turnstile.credential_get(7, 'h_gated');
	});
	ok($node->poll_query_until('postgres', q{
			SELECT count(*) = 1 FROM pg_locks
			 WHERE locktype = 'advisory' AND objid = 4242 AND NOT granted}),
		"$what: the login is running");
	my $dropper = $node->background_psql('postgres', on_error_stop => 0);
	my $dropper_pid = $dropper->query_safe('SELECT pg_backend_pid()');
	$dropper->query_until(qr/dropping/, qq{
		\\echo dropping
		SELECT turnstile.realm_drop('h_gated') AS dropped \\gset
		SELECT turnstile.realm_set('h_other', 'h_login_other(bigint)', propagation => '$p');
	});
	# until both statements are done, or realm_drop waits for the refresh
	ok($node->poll_query_until('postgres', qq{
			SELECT EXISTS (SELECT FROM turnstile.realm WHERE name = 'h_other')
			    OR EXISTS (SELECT FROM pg_stat_activity
			                WHERE pid = $dropper_pid AND wait_event_type = 'Lock')}),
		"$what: the drop ran or waits");
	$gate->query_safe('SELECT pg_advisory_unlock(4242)');
	my $out = $caller->query('\echo SQLSTATE=:SQLSTATE');
	# (asked for once both statements are done: on PostgreSQL 18, query()
	# returns only what its own input printed)
	my $dropped = $dropper->query('\echo DROPPED=:dropped/:SQLSTATE');
	$caller->quit;
	$dropper->quit;
	$gate->quit;
	my ($state) = $out =~ /SQLSTATE=(\w+)/;
	$state //= 'none';
	ok($state eq '00000' || $state eq '42704',
		"$what: the caller gets the credential or 42704 (got $state)")
	  or diag($caller->{stderr});
	like($dropped, qr{DROPPED=t/00000}, "$what: the realm is dropped")
	  or diag($dropper->{stderr});
	is($node->safe_psql('postgres', q{
			SELECT count(*) FROM turnstile.credential
			 WHERE credential LIKE 'from-the-dropped-realm-%'}),
		'0', "$what: the dropped realm's credential is stored nowhere");
	is($node->safe_psql('postgres', q{SELECT turnstile.credential_get(7, 'h_other')}),
		'from-the-other-realm-7',
		"$what: the other realm's user gets its own login's credential");
	$node->safe_psql('postgres', q{SELECT turnstile.realm_drop('h_other')});
}

#
# A ttl or retry_after so long that the expiry leaves the timestamp range.
# realm_set may refuse it (22023); if it accepts it, credential_get and
# credential_status must keep working.
#
foreach my $setting ('ttl', 'retry_after')
{
	my $what = "$setting of a million years";
	my $login = $setting eq 'ttl' ? 'h_login_ok' : 'h_login_raise';
	my ($state) = sqlstate_of(qq{SELECT turnstile.realm_set('h_forever',
		'$login(bigint)', $setting => '1000000 years');});
	ok($state eq '00000' || $state eq '22023',
		"$what: realm_set accepts or refuses it (got $state)");
	next unless $state eq '00000';
	my $expected = $setting eq 'ttl' ? '00000' : 'ZL001';
	($state) = sqlstate_of(q{SELECT turnstile.credential_get(1, 'h_forever');});
	is($state, $expected, "$what: the first credential_get");
	($state) = sqlstate_of(q{SELECT turnstile.credential_get(1, 'h_forever');});
	is($state, $expected, "$what: the second credential_get");
	($state) = sqlstate_of(q{SELECT count(*) FROM turnstile.credential_status;});
	is($state, '00000', "$what: credential_status can be read");
	$node->safe_psql('postgres', q{SELECT turnstile.realm_drop('h_forever')});
}

#
# A hot counter whose slots, incremented at once by two sessions, sum past
# the bigint range (README, Limits): every reader raises 22003, none returns
# a wrapped value, and counter_set brings it back.
#
sub make_overflowed
{
	my ($name) = @_;
	$node->safe_psql('postgres', qq{
		SELECT turnstile.counter_drop('$name');
		SELECT turnstile.counter_create('$name', 0, 2);
	});
	my $first = $node->background_psql('postgres');
	$first->query_safe("BEGIN; SELECT turnstile.counter_incr('$name', $int64_max);");
	# the first session holds its slot, so this increment takes the other
	# (or, should it wait for the first, fails instead of hanging)
	$node->safe_psql('postgres',
		"SET lock_timeout = '10s'; SELECT turnstile.counter_incr('$name', 1)");
	$first->query_safe('COMMIT');
	$first->quit;
}
make_overflowed('h_over');
is($node->safe_psql('postgres', q{SELECT h_counter_sum('h_over')}),
	'9223372036854775808', 'overflowed hot counter: its slots sum past the range');
foreach my $sql (
	q{SELECT turnstile.counter_get('h_over');},
	q{SELECT * FROM turnstile.counter_info('h_over');},
	q{SELECT * FROM turnstile.counter_cas('h_over', 0, 1);},
	q{SELECT turnstile.counter_incr('h_over', 1, 0);},
	q{SELECT turnstile.counter_incr('h_over', 1);},
	q{SELECT turnstile.counter_create('h_over');})
{
	make_overflowed('h_over');
	my $before = $node->safe_psql('postgres', 'SELECT h_fp()');
	my ($state, $out) = sqlstate_of($sql);
	is($state, '22003', "overflowed hot counter: $sql raises 22003")
	  or diag("it returned: $out");
	is($node->safe_psql('postgres', 'SELECT h_fp()'), $before,
		"overflowed hot counter: $sql changes nothing");
}
make_overflowed('h_over');
is($node->safe_psql('postgres', q{
	SELECT value IS NULL FROM turnstile.counters WHERE name = 'h_over'}),
	't', 'overflowed hot counter: turnstile.counters shows no value');
is($node->safe_psql('postgres', q{
	SELECT turnstile.counter_set('h_over', 3), turnstile.counter_get('h_over')}),
	'3|3', 'overflowed hot counter: counter_set brings it back');

#
# Invalid UTF-8 reaches the functions in a SQL_ASCII database, where text
# may hold any byte: names are counted in bytes there, the refresh worker
# gets a realm name of raw bytes, and a login's error with raw bytes in its
# message comes back through the worker with its SQLSTATE.
#
$node->safe_psql('postgres', q{
	CREATE DATABASE h_ascii ENCODING 'SQL_ASCII' LC_COLLATE 'C' LC_CTYPE 'C'
		TEMPLATE template0});
$node->safe_psql('h_ascii', q{
	CREATE EXTENSION pg_turnstile;
	CREATE FUNCTION h_login_bytes(uid bigint) RETURNS text
		LANGUAGE sql AS $$ SELECT E'\\xff\\xfe-' || uid $$;
	CREATE FUNCTION h_login_raise_bytes(uid bigint) RETURNS text
	LANGUAGE plpgsql AS $$
	BEGIN
		RAISE EXCEPTION 'refused: %', E'\\xff\\xc3' USING ERRCODE = 'ZL002';
	END $$;
	SELECT turnstile.realm_set(E'\\xff\\xfe realm', 'h_login_bytes(bigint)',
	                           ttl => '1 microsecond');
	SELECT turnstile.realm_set(repeat(E'\\xc3', 200), 'h_login_raise_bytes(bigint)',
	                           retry_after => '0');
});
foreach my $case (
	[ q{SELECT turnstile.counter_incr(E'\\xff\\xfe', 2)}, '00000', '2' ],
	[ q{SELECT turnstile.counter_get(E'\\xff\\xfe')}, '00000', '2' ],
	[ q{SELECT name = E'\\xff\\xfe', value FROM turnstile.counter_info(E'\\xff\\xfe')},
		'00000', 't|2' ],
	[ q{SELECT value FROM turnstile.counters WHERE name = E'\\xff\\xfe'}, '00000', '2' ],
	[ q{SELECT turnstile.counter_incr(repeat(E'\\xc3', 200))}, '00000', '1' ],
	[ q{SELECT turnstile.counter_incr(repeat(E'\\xc3', 201))}, '22023', '' ],
	[ q{SELECT turnstile.counter_create(repeat('é', 101))}, '22023', '' ],
	[ q{SELECT turnstile.credential_get(1, E'\\xff\\xfe realm') = E'\\xff\\xfe-1'},
		'00000', 't' ],
	[ q{SELECT turnstile.credential_get(1, E'\\xff\\xfe realm') = E'\\xff\\xfe-1'},
		'00000', 't' ],
	[ q{SELECT turnstile.credential_get(2, repeat(E'\\xc3', 200))}, 'ZL002', '' ],
	[ q{SELECT turnstile.credential_get(2, repeat(E'\\xc3', 201))}, '22023', '' ],
	[ q{SELECT count(*) FROM turnstile.credential_status}, '00000', '2' ],
	[ q{SELECT turnstile.counter_drop(E'\\xff\\xfe')}, '00000', 't' ],)
{
	my ($sql, $want_state, $want_out) = @$case;
	my ($rc, $out, $err) = $node->psql('h_ascii',
		"$sql;\n\\echo SQLSTATE=:SQLSTATE", on_error_stop => 0);
	my ($state) = $out =~ /SQLSTATE=(\w+)\s*$/;
	$out =~ s/\n?SQLSTATE=\w+\s*$//;
	is($state // 'none', $want_state, "SQL_ASCII: $sql: SQLSTATE");
	is($out, $want_out, "SQL_ASCII: $sql: result") if $want_state eq '00000';
}

#
# Objects the extension looks up again at run time, changed under it (the
# SQLSTATE of each case; sql/hostile_objects checks the messages and that
# nothing changed): a realm's functions replaced by another shape, its
# registering role dropped, the extension's tables and types altered, and
# callers inside security-restricted operations (CREATE INDEX, REFRESH
# MATERIALIZED VIEW, ANALYZE), whose restriction the realm's login keeps.
#
# just the SQLSTATE of one statement
sub state_of
{
	my ($sql) = @_;
	return (sqlstate_of("$sql;"))[0];
}

$node->safe_psql('postgres', q{
	CREATE SCHEMA ho;
	CREATE FUNCTION ho.login(bigint) RETURNS text LANGUAGE sql AS $$ SELECT 'ho-' || $1 $$;
	CREATE FUNCTION ho.validate(bigint, text) RETURNS boolean LANGUAGE sql AS $$ SELECT false $$;
	CREATE FUNCTION ho.temp_login(bigint) RETURNS text LANGUAGE plpgsql AS $$
	BEGIN
		CREATE TEMP TABLE IF NOT EXISTS ho_planted (x int);
		RETURN 'ho-temp-' || $1;
	END $$;
	SELECT turnstile.realm_set('ho_' || p, 'ho.login(bigint)', 'ho.validate(bigint,text)',
							   '1 hour', '0', '0', p)
	  FROM unnest(ARRAY['required', 'requires_new']) p;
	SELECT turnstile.realm_set('ho_temp_' || p, 'ho.temp_login(bigint)', NULL,
							   '1 hour', '0', '0', p)
	  FROM unnest(ARRAY['required', 'requires_new']) p;
	CREATE ROLE ho_registrar;
	GRANT USAGE ON SCHEMA turnstile, ho TO ho_registrar;
	GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA turnstile TO ho_registrar;
	SET ROLE ho_registrar;
	SELECT turnstile.realm_set('ho_orphan', 'ho.login(bigint)', NULL, '1 hour', '0', '0',
							   'requires_new');
	RESET ROLE;
	DROP OWNED BY ho_registrar;
	DROP ROLE ho_registrar;
	SELECT turnstile.counter_create('ho_plain', 1), turnstile.counter_create('ho_hot', 1, 4);
});

my @replacements = (
	[ 'login returning integer',
	  'DROP FUNCTION ho.login(bigint); CREATE FUNCTION ho.login(bigint) RETURNS integer LANGUAGE sql AS $$ SELECT 42 $$' ],
	[ 'login returning bytea',
	  'DROP FUNCTION ho.login(bigint); CREATE FUNCTION ho.login(bigint) RETURNS bytea LANGUAGE sql AS $$ SELECT $b$\xfffe41$b$::bytea $$' ],
	[ 'login as an aggregate',
	  'DROP FUNCTION ho.login(bigint); CREATE AGGREGATE ho.login(bigint) (SFUNC = int8pl, STYPE = bigint)' ],
	[ 'login as a procedure',
	  'DROP AGGREGATE ho.login(bigint); CREATE PROCEDURE ho.login(bigint) LANGUAGE sql AS $$ SELECT 1 $$' ],);
my $user = 100;
foreach my $replacement (@replacements)
{
	my ($what, $ddl) = @$replacement;
	$node->safe_psql('postgres', $ddl);
	foreach my $propagation ('required', 'requires_new')
	{
		$user++;
		is(state_of("SELECT turnstile.credential_get($user, 'ho_$propagation')"),
			'42P13', "$what, $propagation: 42P13");
	}
}
$node->safe_psql('postgres', q{
	DROP PROCEDURE ho.login(bigint);
	CREATE FUNCTION ho.login(bigint) RETURNS text LANGUAGE sql AS $$ SELECT 'ho-' || $1 $$;
	SELECT turnstile.credential_get(1, 'ho_' || p) FROM unnest(ARRAY['required', 'requires_new']) p;
	SELECT turnstile.credential_invalidate(1, 'ho_' || p) FROM unnest(ARRAY['required', 'requires_new']) p;
	DROP FUNCTION ho.validate(bigint, text);
	CREATE FUNCTION ho.validate(bigint, text) RETURNS text LANGUAGE sql AS $$ SELECT 'yes' $$;
});
foreach my $propagation ('required', 'requires_new')
{
	# invalidated: validate is skipped, login runs and is fine
	is(state_of("SELECT turnstile.credential_get(1, 'ho_$propagation')"),
		'00000', "validate returning text, invalidated credential, $propagation: a new login");
	$node->safe_psql('postgres', qq{
		UPDATE turnstile.credential SET validated_at = validated_at - interval '2 hours'
		 WHERE user_id = 1 AND realm_id = (SELECT realm_id FROM turnstile.realm
		                                   WHERE name = 'ho_$propagation')});
	is(state_of("SELECT turnstile.credential_get(1, 'ho_$propagation')"),
		'42P13', "validate returning text, expired credential, $propagation: 42P13");
}
is(state_of("SELECT turnstile.credential_get(1, 'ho_orphan')"), '42704',
	'realm whose registering role was dropped: 42704');

foreach my $case (
	[ 'ALTER TABLE turnstile.counter_slot ALTER COLUMN value TYPE numeric',
	  'ALTER TABLE turnstile.counter_slot ALTER COLUMN value TYPE bigint',
	  [ "SELECT turnstile.counter_get('ho_plain')", "SELECT turnstile.counter_incr('ho_hot')",
		"SELECT turnstile.credential_get(2, 'ho_required')" ] ],
	[ 'ALTER TABLE turnstile.credential ALTER COLUMN credential TYPE varchar',
	  'ALTER TABLE turnstile.credential ALTER COLUMN credential TYPE text',
	  [ "SELECT turnstile.credential_get(2, 'ho_required')", "SELECT turnstile.counter_incr('ho_plain')" ] ],
	[ 'ALTER TYPE turnstile.credential_state ADD ATTRIBUTE x text',
	  'ALTER TYPE turnstile.credential_state DROP ATTRIBUTE x',
	  [ 'SELECT count(*) FROM turnstile.credential_status' ] ],
	[ 'ALTER TYPE turnstile.counter_state ADD ATTRIBUTE x bigint',
	  'ALTER TYPE turnstile.counter_state DROP ATTRIBUTE x',
	  [ 'SELECT count(*) FROM turnstile.counters',
		"SELECT count(*) FROM turnstile.counter_info('ho_hot')" ] ],)
{
	my ($alter, $undo, $calls) = @$case;
	$node->safe_psql('postgres', $alter);
	is(state_of($_), '55000', "after $alter: $_: 55000") foreach @$calls;
	$node->safe_psql('postgres', $undo);
	is(state_of($_), '00000', "after undoing it: $_ works again") foreach @$calls;
}
is($node->safe_psql('postgres', q{
	SELECT turnstile.counter_get('ho_plain'), turnstile.counter_get('ho_hot')}),
	'2|2', 'the altered and restored counters kept their values');

# security-restricted callers: the index expression's credentials are fresh
# when the index is made, then invalidated, so ANALYZE logs in again
$node->safe_psql('postgres', q{
	CREATE FUNCTION ho.cred(bigint, text) RETURNS text LANGUAGE sql IMMUTABLE
		AS $$ SELECT turnstile.credential_get($1, $2) $$;
	CREATE TABLE ho.t (id bigint, realm text);
	INSERT INTO ho.t SELECT 200 + g, 'ho_temp_' || p
	  FROM generate_series(1, 3) g, unnest(ARRAY['required', 'requires_new']) p;
	SELECT count(turnstile.credential_get(id, realm)) FROM ho.t;
	CREATE INDEX ho_t_cred ON ho.t (ho.cred(id, realm));
	SELECT count(turnstile.credential_invalidate(id, realm)) FROM ho.t;
	CREATE MATERIALIZED VIEW ho.mv AS SELECT ho.cred(300, 'ho_temp_required') WITH NO DATA;
	DISCARD TEMP;
});
is(state_of('ANALYZE ho.t'), '42501',
	'ANALYZE evaluating an index expression: the login stays security-restricted');
is(state_of('REFRESH MATERIALIZED VIEW ho.mv'), '42501',
	'REFRESH MATERIALIZED VIEW: the login stays security-restricted');
is(state_of(q{CREATE INDEX ON ho.t (ho.cred(id + 1000, realm))}), '42501',
	'CREATE INDEX: the login stays security-restricted');
is($node->safe_psql('postgres', q{SELECT count(*) FROM pg_class WHERE relname = 'ho_planted'}),
	'0', 'no temporary table was planted by a restricted login');

#
# DROP EXTENSION and CREATE EXTENSION again and again while four sessions
# increment: the remembered table OIDs are locked before use, so a call
# either works or finds the extension gone (42883, 3F000, 42P01, 55006),
# never XX000 "could not open relation with OID".
#
$node->safe_psql('postgres', 'DROP SCHEMA ho CASCADE');
my @incrementers;
# psql reads its statements from a file, so that they run while the loop
# below drops and creates the extension (input from a string would only be
# fed to it when the harness is pumped)
my $increments = "$PostgreSQL::Test::Utils::tmp_check/increments.sql";
PostgreSQL::Test::Utils::append_to_file($increments, "\\set VERBOSITY verbose\n"
	  . ("SELECT turnstile.counter_incr('dropped', 1), turnstile.counter_get('dropped_hot');\n"
		  x 20000));
foreach my $i (1 .. 4)
{
	my %session = (out => '', err => '');
	$session{handle} = IPC::Run::start(
		[ 'psql', '-X', '-q', '-d', $node->connstr('postgres'), '-f', $increments ],
		'>', \$session{out}, '2>', \$session{err});
	push @incrementers, \%session;
}
foreach my $round (1 .. 15)
{
	$node->safe_psql('postgres', q{
		DROP EXTENSION pg_turnstile CASCADE;
		CREATE EXTENSION pg_turnstile;
		SELECT turnstile.counter_create('dropped_hot', 0, 4);
	});
}
$_->{handle}->finish foreach @incrementers;
my $errors = join '', map { $_->{err} } @incrementers;
my @internal = $errors =~ /ERROR:\s+(XX\d\d\d: .*)$/mg;
is(scalar(@internal), 0, 'DROP and CREATE EXTENSION under load: no internal error')
  or diag join "\n", @internal[0 .. ($#internal < 9 ? $#internal : 9)];
my %load_states;
$load_states{$_}++ foreach $errors =~ /ERROR:\s+(\w{5}):/mg;
note 'SQLSTATEs the incrementers saw: '
  . join(', ', map { "$_ ($load_states{$_} times)" } sort keys %load_states);
cmp_ok($node->safe_psql('postgres', q{SELECT count(*) FROM turnstile.counters}), '>=', 1,
	'the extension works after the last CREATE EXTENSION');

# The server is still up, and never crashed.
is($node->safe_psql('postgres', 'SELECT 1'), '1', 'the server still answers');
$node->stop;
my $log = slurp_file($node->logfile);
unlike($log, qr/terminated by signal|was terminated by exception/,
	'the log shows no crashed backend');
unlike($log, qr/\bPANIC:|TRAP:/, 'the log shows no PANIC and no failed assertion');

done_testing();
