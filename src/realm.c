/*-------------------------------------------------------------------------
 *
 * realm.c
 *	  Realms: registering a login service (realm_set, realm_drop) and who
 *	  may use it (realm_grant, realm_revoke).
 *
 * A realm names the functions that log a user in and, optionally, validate
 * a cached credential, with the time a credential lives.  The functions run
 * as the role that registered the realm, with the search_path it had, so
 * they are checked here as that role: they must exist, have the signature
 * provider.c calls, and be executable by it.  Realm ids are allocated from
 * the set of realms under the registry lock (keylock.c), and are reused
 * after a realm is dropped; a refresh checks that its realm is still the
 * one it started for (refresh.c).
 *
 *-------------------------------------------------------------------------
 */
#include "turnstile.h"

#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_proc.h"
#include "catalog/pg_type.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/regproc.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"

/*
 * The longest ttl and retry_after: beyond this, timestamps plus these
 * intervals could leave their range.
 */
#define TS_REALM_LONGEST_YEARS	100

PG_FUNCTION_INFO_V1(realm_set);
PG_FUNCTION_INFO_V1(realm_drop);
PG_FUNCTION_INFO_V1(realm_grant);
PG_FUNCTION_INFO_V1(realm_revoke);

static TsStatement ts_stmt_free_realm_id = {
	"SELECT CASE WHEN NOT EXISTS (SELECT FROM turnstile.realm"
	"                              WHERE realm_id OPERATOR(pg_catalog.=) 1) THEN 1"
	"       ELSE (SELECT pg_catalog.min(r.realm_id OPERATOR(pg_catalog.+) 1)"
	"               FROM turnstile.realm r"
	"              WHERE NOT EXISTS (SELECT FROM turnstile.realm n"
	"                                 WHERE n.realm_id OPERATOR(pg_catalog.=)"
	"                                       (r.realm_id OPERATOR(pg_catalog.+) 1))) END",
	0, {InvalidOid}
};

static TsStatement ts_stmt_realm_update = {
	"UPDATE turnstile.realm"
	"   SET login = $2, validate = $3, ttl = $4, refresh_ahead = $5,"
	"       retry_after = $6, propagation = $7, registered_by = $8, search_path = $9"
	" WHERE name OPERATOR(pg_catalog.=) $1",
	9, {TEXTOID, TEXTOID, TEXTOID, INTERVALOID, INTERVALOID,
	INTERVALOID, TEXTOID, REGROLEOID, TEXTOID}
};

static TsStatement ts_stmt_realm_insert = {
	"INSERT INTO turnstile.realm (name, login, validate, ttl, refresh_ahead,"
	"                             retry_after, propagation, registered_by,"
	"                             search_path, realm_id)"
	" VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
	10, {TEXTOID, TEXTOID, TEXTOID, INTERVALOID, INTERVALOID,
	INTERVALOID, TEXTOID, REGROLEOID, TEXTOID, INT4OID}
};

static TsStatement ts_stmt_realm_grant = {
	"INSERT INTO turnstile.realm_grant (realm_id, grantee)"
	" SELECT realm_id, $2 FROM turnstile.realm WHERE name OPERATOR(pg_catalog.=) $1"
	" ON CONFLICT DO NOTHING",
	2, {TEXTOID, REGROLEOID}
};

static TsStatement ts_stmt_realm_revoke = {
	"DELETE FROM turnstile.realm_grant g USING turnstile.realm r"
	" WHERE r.realm_id OPERATOR(pg_catalog.=) g.realm_id"
	"   AND r.name OPERATOR(pg_catalog.=) $1 AND g.grantee OPERATOR(pg_catalog.=) $2",
	2, {TEXTOID, REGROLEOID}
};

static TsStatement ts_stmt_realm_exists = {
	"SELECT FROM turnstile.realm WHERE name OPERATOR(pg_catalog.=) $1",
	1, {TEXTOID}
};

static TsStatement ts_stmt_realm_delete = {
	"DELETE FROM turnstile.realm WHERE name OPERATOR(pg_catalog.=) $1",
	1, {TEXTOID}
};

/*
 * Check that a realm function exists with the expected signature and that
 * the registering role may execute it.
 */
static void
ts_check_provider(Oid function, const char *what, bool validate)
{
	if (!SearchSysCacheExists1(PROCOID, ObjectIdGetDatum(function)))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_FUNCTION),
				 errmsg("%s function %u does not exist", what, function)));
	if (!ts_provider_signature_fits(function, validate))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s function %s has the wrong signature", what,
						format_procedure(function)),
				 ts_provider_signature_detail(validate)));

	if (!DatumGetBool(DirectFunctionCall3(has_function_privilege_id_id,
										  ObjectIdGetDatum(GetUserId()),
										  ObjectIdGetDatum(function),
										  CStringGetTextDatum("EXECUTE"))))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied for %s function %s", what,
						format_procedure(function)),
				 errdetail("A realm's functions run as the role that registers it.")));
}

static Interval *
ts_interval_arg(FunctionCallInfo fcinfo, int argno, const char *argname)
{
	ts_require_arg(PG_ARGISNULL(argno), argname);
	return PG_GETARG_INTERVAL_P(argno);
}

static bool
ts_interval_lt(Interval *a, Interval *b)
{
	return DatumGetBool(DirectFunctionCall2(interval_lt, IntervalPGetDatum(a),
											IntervalPGetDatum(b)));
}

/*
 * Raise 40001 if a realm that the caller's snapshot does not show exists in
 * the latest committed state.  Runs inside a store session.
 */
static void
ts_realm_check_unchanged(const char *realm_name)
{
	Datum		args[1] = {CStringGetTextDatum(realm_name)};
	Snapshot	latest = ts_latest_snapshot();
	int			rows = ts_store_exec(&ts_stmt_realm_exists, args, NULL, latest, true);

	ts_policy_release(latest);
	if (rows > 0)
		ts_policy_report_conflict(psprintf("realm \"%s\"", realm_name), "registered",
								  "realm was registered");
}

/*
 * Check a realm's intervals and propagation; raise 22023 naming the realm.
 */
static void
ts_realm_check_settings(const char *realm_name, Interval *ttl, Interval *refresh_ahead,
						Interval *retry_after, const char *propagation)
{
	Interval   *zero = palloc0(sizeof(Interval));
	Interval   *longest = palloc0(sizeof(Interval));

	longest->month = TS_REALM_LONGEST_YEARS * MONTHS_PER_YEAR;
	if (!ts_interval_lt(zero, ttl))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("ttl of realm \"%s\" must be positive", realm_name)));
	if (!ts_interval_lt(ttl, longest) || !ts_interval_lt(retry_after, longest))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("ttl and retry_after of realm \"%s\" must be less than %d years",
						realm_name, TS_REALM_LONGEST_YEARS)));
	if (ts_interval_lt(refresh_ahead, zero) || !ts_interval_lt(refresh_ahead, ttl))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("refresh_ahead of realm \"%s\" must be at least zero and less than ttl",
						realm_name)));
	if (ts_interval_lt(retry_after, zero))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("retry_after of realm \"%s\" must not be negative", realm_name)));
	if (strcmp(propagation, "required") != 0 && strcmp(propagation, "requires_new") != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid propagation \"%s\"", propagation),
				 errhint("Use \"requires_new\" or \"required\".")));
}

/*
 * realm_set(realm, login, validate = NULL, ttl = '30 minutes',
 *			 refresh_ahead = '0', retry_after = '30 seconds',
 *			 propagation = 'requires_new') -> void
 */
Datum
realm_set(PG_FUNCTION_ARGS)
{
	char	   *realm_name = ts_realm_arg(fcinfo, 0);
	Oid			login;
	Oid			validate = PG_ARGISNULL(2) ? InvalidOid : PG_GETARG_OID(2);
	Interval   *ttl = ts_interval_arg(fcinfo, 3, "ttl");
	Interval   *refresh_ahead = ts_interval_arg(fcinfo, 4, "refresh_ahead");
	Interval   *retry_after = ts_interval_arg(fcinfo, 5, "retry_after");
	char	   *propagation;
	Datum		args[TS_STATEMENT_MAX_ARGS];
	char		nulls[TS_STATEMENT_MAX_ARGS];
	TsStoreSession session;
	Snapshot	snapshot;
	bool		isnull;

	memset(nulls, ' ', sizeof(nulls));
	ts_require_arg(PG_ARGISNULL(1), "login");
	login = PG_GETARG_OID(1);
	ts_require_arg(PG_ARGISNULL(6), "propagation");
	propagation = text_to_cstring(PG_GETARG_TEXT_PP(6));

	ts_realm_check_settings(realm_name, ttl, refresh_ahead, retry_after, propagation);

	ts_check_provider(login, "login", false);
	if (OidIsValid(validate))
		ts_check_provider(validate, "validate", true);

	/* by name, schema-qualified: see the comment on turnstile.realm */
	args[0] = CStringGetTextDatum(realm_name);
	args[1] = CStringGetTextDatum(format_procedure_qualified(login));
	args[2] = OidIsValid(validate) ?
		CStringGetTextDatum(format_procedure_qualified(validate)) : (Datum) 0;
	nulls[2] = OidIsValid(validate) ? ' ' : 'n';
	args[3] = IntervalPGetDatum(ttl);
	args[4] = IntervalPGetDatum(refresh_ahead);
	args[5] = IntervalPGetDatum(retry_after);
	args[6] = CStringGetTextDatum(propagation);
	args[7] = ObjectIdGetDatum(GetUserId());
	/* the realm's functions will resolve names as the registering role did */
	args[8] = CStringGetTextDatum(namespace_search_path);

	ts_require_writable("realm \"%s\"", realm_name);

	/* realm ids are allocated under the registry lock, smallest free first */
	ts_lock_realm_registry();
	ts_store_open(&session);
	snapshot = ts_policy_snapshot();
	if (ts_store_exec(&ts_stmt_realm_update, args, nulls, snapshot, false) == 0)
	{
		/*
		 * Under "repeatable read" the snapshot may predate a concurrent
		 * realm_set of the same name that committed while this one waited
		 * for the registry lock: inserting would violate the unique name.
		 */
		if (!ts_policy_uses_latest())
			ts_realm_check_unchanged(realm_name);
		ts_store_exec(&ts_stmt_free_realm_id, NULL, NULL, snapshot, false);
		args[9] = ts_store_value(0, 1, &isnull);
		if (isnull || DatumGetInt32(args[9]) > TURNSTILE_REALM_ID_MAX)
			ereport(ERROR,
					(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
					 errmsg("cannot register more than %d realms", TURNSTILE_REALM_ID_MAX)));
		ts_store_exec(&ts_stmt_realm_insert, args, nulls, snapshot, false);
	}
	ts_policy_release(snapshot);
	ts_store_close(&session);

	PG_RETURN_VOID();
}

/*
 * realm_drop(realm) -> boolean
 */
Datum
realm_drop(PG_FUNCTION_ARGS)
{
	char	   *realm_name = ts_realm_arg(fcinfo, 0);
	Datum		args[1] = {CStringGetTextDatum(realm_name)};
	TsStoreSession session;
	Snapshot	snapshot;
	bool		existed;

	ts_require_writable("realm \"%s\"", realm_name);
	ts_lock_realm_registry();
	ts_store_open(&session);
	snapshot = ts_policy_snapshot();
	existed = ts_store_exec(&ts_stmt_realm_delete, args, NULL, snapshot, false) > 0;
	ts_policy_release(snapshot);
	ts_store_close(&session);

	PG_RETURN_BOOL(existed);
}

/*
 * Check that a realm exists; raise 42704 naming it if not.  Runs inside a
 * store session.
 */
static void
ts_realm_require(const char *realm_name, Snapshot snapshot)
{
	Datum		args[1] = {CStringGetTextDatum(realm_name)};

	if (ts_store_exec(&ts_stmt_realm_exists, args, NULL, snapshot, true) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("realm \"%s\" does not exist", realm_name)));
}

/*
 * Run realm_grant's or realm_revoke's statement for (realm, grantee), under
 * the registry lock; returns the number of grants it changed.
 */
static int
ts_realm_change_grant(FunctionCallInfo fcinfo, TsStatement *stmt)
{
	char	   *realm_name = ts_realm_arg(fcinfo, 0);
	Datum		args[2];
	TsStoreSession session;
	Snapshot	snapshot;
	int			rows;

	ts_require_arg(PG_ARGISNULL(1), "grantee");
	ts_require_writable("realm \"%s\"", realm_name);
	args[0] = CStringGetTextDatum(realm_name);
	args[1] = PG_GETARG_DATUM(1);

	ts_lock_realm_registry();
	ts_store_open(&session);
	snapshot = ts_policy_snapshot();
	ts_realm_require(realm_name, snapshot);
	rows = ts_store_exec(stmt, args, NULL, snapshot, false);
	ts_policy_release(snapshot);
	ts_store_close(&session);
	return rows;
}

/*
 * realm_grant(realm, grantee) -> void
 */
Datum
realm_grant(PG_FUNCTION_ARGS)
{
	(void) ts_realm_change_grant(fcinfo, &ts_stmt_realm_grant);
	PG_RETURN_VOID();
}

/*
 * realm_revoke(realm, grantee) -> boolean
 */
Datum
realm_revoke(PG_FUNCTION_ARGS)
{
	PG_RETURN_BOOL(ts_realm_change_grant(fcinfo, &ts_stmt_realm_revoke) > 0);
}
