/*-------------------------------------------------------------------------
 *
 * refresh.c
 *	  Steps 4 and 5 of credential_get: revalidate, else log in, and store.
 *
 * The caller holds the user's lock and has just read the cached state under
 * it.  Where these steps run is the realm's propagation: "required" runs them
 * right here, inside the caller's transaction, so what they store commits or
 * rolls back with it; "requires_new" has a background worker run the very
 * same steps in a transaction of its own (worker.c).
 *
 *-------------------------------------------------------------------------
 */
#include "turnstile.h"

#include "catalog/pg_type.h"
#include "utils/builtins.h"

/*
 * The realm is still the one the refresh started for ($1 is its id, $2 its
 * name): realm ids are reused after a realm is dropped.  The key-share lock
 * keeps it from being dropped until this transaction ends.
 */
static TsStatement ts_stmt_realm_guard = {
	"SELECT FROM turnstile.realm"
	" WHERE realm_id OPERATOR(pg_catalog.=) $1 AND name OPERATOR(pg_catalog.=) $2"
	"   FOR KEY SHARE",
	2, {INT4OID, TEXTOID}
};

/* The credential still works: it is valid from now on. */
static TsStatement ts_stmt_revalidated = {
	"UPDATE turnstile.credential"
	"   SET validated_at = pg_catalog.clock_timestamp(),"
	"       validations = validations OPERATOR(pg_catalog.+) 1,"
	"       version = version OPERATOR(pg_catalog.+) 1"
	" WHERE realm_id OPERATOR(pg_catalog.=) $1 AND user_id OPERATOR(pg_catalog.=) $2",
	2, {INT4OID, INT8OID}
};

/*
 * A new credential ($3), valid from now; $4 and $5 are added to the login
 * and validation counts.
 */
static TsStatement ts_stmt_replace = {
	"UPDATE turnstile.credential"
	"   SET credential = $3, invalidated = false,"
	"       issued_at = t.now, validated_at = t.now,"
	"       logins = logins OPERATOR(pg_catalog.+) $4,"
	"       validations = validations OPERATOR(pg_catalog.+) $5,"
	"       failures = 0, last_error = NULL, last_sqlstate = NULL, failed_at = NULL,"
	"       version = version OPERATOR(pg_catalog.+) 1"
	"  FROM (SELECT pg_catalog.clock_timestamp() AS now) t"
	" WHERE realm_id OPERATOR(pg_catalog.=) $1 AND user_id OPERATOR(pg_catalog.=) $2",
	5, {INT4OID, INT8OID, TEXTOID, INT8OID, INT8OID}
};

static TsStatement ts_stmt_insert = {
	"INSERT INTO turnstile.credential"
	"       (realm_id, user_id, credential, issued_at, validated_at, logins, validations)"
	" SELECT $1, $2, $3, t.now, t.now, $4, $5"
	"   FROM (SELECT pg_catalog.clock_timestamp() AS now) t",
	5, {INT4OID, INT8OID, TEXTOID, INT8OID, INT8OID}
};

/*
 * Store a credential as valid from now, adding to the login and validation
 * counts.  exists says whether the user's row is there already (the caller
 * read it under the user's lock, so it cannot have changed since).
 */
void
ts_credential_store(const TsRealm *realm, int64 user_id, bool exists,
					const char *credential, int logins, int validations,
					Snapshot snapshot)
{
	Datum		args[5] = {
		Int32GetDatum(realm->realm_id), Int64GetDatum(user_id),
		CStringGetTextDatum(credential), Int64GetDatum(logins),
		Int64GetDatum(validations)
	};

	ts_store_exec(exists ? &ts_stmt_replace : &ts_stmt_insert, args, NULL,
				  snapshot, false);
}

/*
 * Before storing what the realm's functions returned: make sure the realm
 * was not dropped while they ran (perhaps by themselves), and that no other
 * realm took its id, which would otherwise receive this user's credential.
 */
static void
ts_refresh_check_realm(const TsRealm *realm, int64 user_id)
{
	Datum		args[2] = {Int32GetDatum(realm->realm_id), CStringGetTextDatum(realm->name)};
	Snapshot	latest = ts_latest_snapshot();
	int			rows = ts_store_exec(&ts_stmt_realm_guard, args, NULL, latest, false);

	ts_policy_release(latest);
	if (rows == 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("realm \"%s\" was dropped while the credential of user " INT64_FORMAT " was being refreshed",
						realm->name, user_id)));
}

/*
 * Steps 4 and 5 in the current transaction.  Returns the credential to use.
 */
char *
ts_refresh_steps(const TsRealm *realm, int64 user_id, const TsCredential *cached,
				 Snapshot snapshot)
{
	char	   *credential;
	int			validations = 0;

	/* an invalidated credential is known not to work: skip validate */
	if (cached->credential && !cached->invalidated && realm->validate_signature)
	{
		if (ts_provider_validate(realm, user_id, cached->credential))
		{
			Datum		args[2] = {Int32GetDatum(realm->realm_id), Int64GetDatum(user_id)};

			ts_refresh_check_realm(realm, user_id);
			ts_store_exec(&ts_stmt_revalidated, args, NULL, snapshot, false);
			return cached->credential;
		}
		validations = 1;		/* it said no; count the call all the same */
	}

	credential = ts_provider_login(realm, user_id);
	ts_refresh_check_realm(realm, user_id);
	ts_credential_store(realm, user_id, cached->exists, credential, 1,
						validations, snapshot);
	return credential;
}

/*
 * Refresh a user's credential where the realm's propagation says.
 *
 * requires_new runs the steps in a background worker's transaction, except
 * when the calling transaction has itself written this user's row (say, it
 * invalidated the credential): the worker would wait for that row's lock,
 * held by the caller, while the caller waits for the worker.  Then the
 * steps run here, as with required.
 */
char *
ts_refresh(const TsRealm *realm, int64 user_id, const TsCredential *cached,
		   Snapshot snapshot)
{
	if (realm->propagation == TURNSTILE_REQUIRES_NEW && !cached->changed_here)
		return ts_refresh_in_worker(realm, user_id);
	return ts_refresh_steps(realm, user_id, cached, snapshot);
}
