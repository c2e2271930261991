/*-------------------------------------------------------------------------
 *
 * credential_state.c
 *	  A user's cached credential as the store holds it: reading it (with its
 *	  realm), storing a new one, recording a failed refresh.
 *
 * A read gives the realm (its login and validate, as registered) and the
 * user's row, judged by the server's clock at the time of the read: fresh,
 * usable, blocked by a recent failure.  A read under the user's lock also
 * says which open transaction, if any, wrote the row (and so holds the
 * user, see keylock.c); the callers wait for it before they act.
 *
 *-------------------------------------------------------------------------
 */
#include "turnstile.h"

#include "access/transam.h"
#include "access/xact.h"
#include "catalog/pg_type.h"
#include "utils/builtins.h"

/*
 * The realm and the user's cached state in one read.  fresh and usable are
 * computed by the server's clock at the time of the read.
 */
static TsStatement ts_stmt_lookup = {
	"SELECT r.realm_id, pg_catalog.to_regprocedure(r.login)::pg_catalog.oid,"
	"       pg_catalog.to_regprocedure(r.validate)::pg_catalog.oid, r.registered_by,"
	"       r.propagation,"
	"       c.user_id IS NOT NULL, c.credential, c.invalidated,"
	"       c.validated_at OPERATOR(pg_catalog.+) r.ttl"
	"         OPERATOR(pg_catalog.-) r.refresh_ahead"
	"         OPERATOR(pg_catalog.>) pg_catalog.clock_timestamp(),"
	"       c.validated_at OPERATOR(pg_catalog.+) r.ttl"
	"         OPERATOR(pg_catalog.>) pg_catalog.clock_timestamp(),"
	"       c.version, c.xmin,"
	"       c.failed_at OPERATOR(pg_catalog.+) r.retry_after"
	"         OPERATOR(pg_catalog.>) pg_catalog.clock_timestamp(),"
	"       c.last_error, c.last_sqlstate,"
	"       (c.failed_at OPERATOR(pg_catalog.+) r.retry_after)::pg_catalog.text,"
	"       r.search_path, r.login, r.validate, c.xmax"
	"  FROM turnstile.realm r"
	"  LEFT JOIN turnstile.credential c"
	"    ON c.realm_id OPERATOR(pg_catalog.=) r.realm_id"
	"   AND c.user_id OPERATOR(pg_catalog.=) $2"
	" WHERE r.name OPERATOR(pg_catalog.=) $1",
	2, {TEXTOID, INT8OID}
};

/* ts_stmt_lookup's columns, in its order (SPI numbers them from 1). */
enum
{
	LOOKUP_REALM_ID = 1,
	LOOKUP_LOGIN,
	LOOKUP_VALIDATE,
	LOOKUP_REGISTERED_BY,
	LOOKUP_PROPAGATION,
	LOOKUP_EXISTS,
	LOOKUP_CREDENTIAL,
	LOOKUP_INVALIDATED,
	LOOKUP_FRESH,
	LOOKUP_USABLE,
	LOOKUP_VERSION,
	LOOKUP_XMIN,
	LOOKUP_BLOCKED,
	LOOKUP_LAST_ERROR,
	LOOKUP_LAST_SQLSTATE,
	LOOKUP_BLOCKED_UNTIL,
	LOOKUP_SEARCH_PATH,
	LOOKUP_LOGIN_SIGNATURE,
	LOOKUP_VALIDATE_SIGNATURE,
	LOOKUP_XMAX
};

static TsStatement ts_stmt_record_failure = {
	"INSERT INTO turnstile.credential AS c"
	"       (realm_id, user_id, failures, last_error, last_sqlstate, failed_at)"
	" SELECT r.realm_id, $2, 1, $3, $4, pg_catalog.clock_timestamp()"
	"   FROM turnstile.realm r WHERE r.name OPERATOR(pg_catalog.=) $1"
	" ON CONFLICT (realm_id, user_id) DO UPDATE"
	"    SET failures = c.failures OPERATOR(pg_catalog.+) 1,"
	"        last_error = excluded.last_error, last_sqlstate = excluded.last_sqlstate,"
	"        failed_at = excluded.failed_at,"
	"        version = c.version OPERATOR(pg_catalog.+) 1",
	4, {TEXTOID, INT8OID, TEXTOID, TEXTOID}
};

/*
 * Read a realm and one user's cached credential with the given snapshot.
 * Raises 42704 if the realm does not exist.  Runs inside a store session;
 * the strings it returns live in the session's caller context.
 */
void
ts_credential_read(TsStoreSession *session, const char *realm_name, int64 user_id,
				   Snapshot snapshot, TsRealm *realm, TsCredential *cached)
{
	Datum		args[2] = {CStringGetTextDatum(realm_name), Int64GetDatum(user_id)};
	bool		isnull;
	char	   *propagation;

	/* not read-only: SPI then lets the snapshot see this call's own writes */
	if (ts_store_exec(&ts_stmt_lookup, args, NULL, snapshot, false) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("realm \"%s\" does not exist", realm_name),
				 errhint("Register it with turnstile.realm_set.")));

	realm->realm_id = DatumGetInt32(ts_store_value(0, LOOKUP_REALM_ID, &isnull));
	realm->name = MemoryContextStrdup(session->caller_context, realm_name);
	realm->login = DatumGetObjectId(ts_store_value(0, LOOKUP_LOGIN, &isnull));
	if (isnull)
		realm->login = InvalidOid;
	realm->validate = DatumGetObjectId(ts_store_value(0, LOOKUP_VALIDATE, &isnull));
	if (isnull)
		realm->validate = InvalidOid;
	realm->registered_by = DatumGetObjectId(ts_store_value(0, LOOKUP_REGISTERED_BY, &isnull));
	propagation = ts_store_text(session, 0, LOOKUP_PROPAGATION);
	realm->propagation = strcmp(propagation, "required") == 0 ?
		TURNSTILE_REQUIRED : TURNSTILE_REQUIRES_NEW;

	cached->exists = DatumGetBool(ts_store_value(0, LOOKUP_EXISTS, &isnull));
	cached->credential = ts_store_text(session, 0, LOOKUP_CREDENTIAL);
	cached->invalidated = DatumGetBool(ts_store_value(0, LOOKUP_INVALIDATED, &isnull)) && !isnull;
	cached->fresh = DatumGetBool(ts_store_value(0, LOOKUP_FRESH, &isnull)) && !isnull;
	cached->usable = DatumGetBool(ts_store_value(0, LOOKUP_USABLE, &isnull)) && !isnull;
	cached->version = DatumGetInt64(ts_store_value(0, LOOKUP_VERSION, &isnull));
	if (isnull)
		cached->version = 0;
	cached->changed_here = cached->exists &&
		TransactionIdIsCurrentTransactionId(DatumGetTransactionId(ts_store_value(0, LOOKUP_XMIN, &isnull)));
	cached->blocked = DatumGetBool(ts_store_value(0, LOOKUP_BLOCKED, &isnull)) && !isnull;
	cached->last_error = ts_store_text(session, 0, LOOKUP_LAST_ERROR);
	cached->last_sqlstate = ts_store_text(session, 0, LOOKUP_LAST_SQLSTATE);
	cached->blocked_until = ts_store_text(session, 0, LOOKUP_BLOCKED_UNTIL);
	realm->search_path = ts_store_text(session, 0, LOOKUP_SEARCH_PATH);
	realm->login_signature = ts_store_text(session, 0, LOOKUP_LOGIN_SIGNATURE);
	realm->validate_signature = ts_store_text(session, 0, LOOKUP_VALIDATE_SIGNATURE);
	cached->writer = cached->exists ?
		ts_xact_writing(DatumGetTransactionId(ts_store_value(0, LOOKUP_XMAX, &isnull)), snapshot) :
		InvalidTransactionId;

	/* only a credential that exists and was not invalidated can be used */
	if (cached->credential == NULL || cached->invalidated)
		cached->fresh = cached->usable = false;

	if (!ts_realm_accessible(session->saved_userid, realm->realm_id,
							 realm->registered_by, snapshot))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied for realm \"%s\"", realm_name),
				 errhint("The realm's owner can allow it with turnstile.realm_grant.")));
}

/*
 * Raise the failure a recent refresh recorded, while retry_after holds off
 * new attempts: its SQLSTATE, and when the next attempt is allowed.
 */
void
ts_credential_raise_recorded_failure(const TsRealm *realm, int64 user_id,
									 const TsCredential *cached)
{
	const char *sqlstate = cached->last_sqlstate;
	int			sqlerrcode = ERRCODE_EXTERNAL_ROUTINE_EXCEPTION;

	/* the column is text: use it only if it holds a well-formed SQLSTATE */
	if (sqlstate && strlen(sqlstate) == 5 &&
		strspn(sqlstate, "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ") == 5)
		sqlerrcode = MAKE_SQLSTATE(sqlstate[0], sqlstate[1], sqlstate[2],
								   sqlstate[3], sqlstate[4]);

	ereport(ERROR,
			(errcode(sqlerrcode),
			 errmsg("refresh of user " INT64_FORMAT " in realm \"%s\" failed recently; next attempt after %s",
					user_id, realm->name, cached->blocked_until),
			 errdetail("The last attempt failed: %s",
					   cached->last_error ? cached->last_error : "(no message)"),
			 errhint("The realm's retry_after sets how long a failure holds off new attempts; credential_set stores a credential at once.")));
}

void
ts_credential_require_writable(int64 user_id, const char *realm_name)
{
	ts_require_writable("the credential of user " INT64_FORMAT " in realm \"%s\"",
						user_id, realm_name);
}

/*
 * With the user's lock held, take the policy's snapshot and read the state
 * again.  Under "repeatable read", raise 40001 if the state changed after
 * the caller's snapshot.  Returns the snapshot to write with.
 */
Snapshot
ts_credential_read_locked(TsStoreSession *session, const char *realm_name,
						  int64 user_id, TsRealm *realm, TsCredential *cached)
{
	Snapshot	snapshot;

	snapshot = ts_policy_snapshot();
	ts_credential_read(session, realm_name, user_id, snapshot, realm, cached);
	ts_credential_check_unchanged(session, realm_name, user_id, cached);
	/* a row that an open transaction is inserting holds the user too */
	if (!cached->exists)
		cached->writer = ts_credential_inserting(realm->realm_id, user_id);
	return snapshot;
}

/*
 * Take the user's exclusive lock and read the state under it, once no open
 * transaction holds the user through its row (see keylock.c): if one does,
 * give the lock back, wait for it to end, and start over.  Returns the
 * snapshot to write with; *lock says whether this call took the lock.
 */
Snapshot
ts_credential_lock_exclusive(TsStoreSession *session, const char *realm_name,
							 int64 user_id, TsRealm *realm, TsCredential *cached,
							 TsLockResult *lock)
{
	for (;;)
	{
		Snapshot	snapshot;

		*lock = ts_lock_credential(realm->realm_id, user_id, ExclusiveLock, true, realm_name);
		snapshot = ts_credential_read_locked(session, realm_name, user_id, realm, cached);
		if (!TransactionIdIsValid(cached->writer))
			return snapshot;
		ts_policy_release(snapshot);
		if (*lock == TS_LOCK_ACQUIRED)
			ts_unlock_credential(realm->realm_id, user_id, ExclusiveLock);
		ts_credential_wait_writer(realm->realm_id, user_id, cached->writer, realm_name);
	}
}

/*
 * The end of a call that wrote a user's row under the exclusive lock it
 * took: the row holds the user from now on, so the lock goes.
 */
void
ts_credential_unlock_written(const TsRealm *realm, int64 user_id, TsLockResult lock)
{
	if (lock == TS_LOCK_ACQUIRED && ts_keys_held_by_rows())
		ts_unlock_credential(realm->realm_id, user_id, ExclusiveLock);
}

/*
 * Record a failed refresh for a user: count it, keep its message and
 * SQLSTATE, and hold off new attempts for the realm's retry_after.
 */
void
ts_credential_record_failure(const char *realm_name, int64 user_id, ErrorData *failure)
{
	Datum		args[4] = {
		CStringGetTextDatum(realm_name), Int64GetDatum(user_id),
		CStringGetTextDatum(failure->message ? failure->message : ""),
		CStringGetTextDatum(unpack_sql_state(failure->sqlerrcode))
	};
	TsStoreSession session;

	ts_store_open(&session);
	ts_store_exec(&ts_stmt_record_failure, args, NULL, InvalidSnapshot, false);
	ts_store_close(&session);
}

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
 * Under "repeatable read", raise 40001 if the user's state as read with the
 * caller's snapshot is not its latest committed state: the caller would act
 * on (or be handed) a credential that was replaced meanwhile.
 */
void
ts_credential_check_unchanged(TsStoreSession *session, const char *realm_name,
							  int64 user_id, TsCredential *cached)
{
	if (!ts_policy_uses_latest())
	{
		Snapshot	latest_snapshot = ts_latest_snapshot();
		TsRealm		latest_realm;
		TsCredential latest;

		ts_credential_read(session, realm_name, user_id, latest_snapshot,
						   &latest_realm, &latest);
		ts_policy_release(latest_snapshot);
		/* who holds the user is a matter of the latest state */
		cached->writer = latest.writer;
		if (latest.version != cached->version)
			ts_policy_report_conflict(psprintf("credential of user " INT64_FORMAT " in realm \"%s\"",
											   user_id, realm_name),
									  "changed", "credential changed");
	}
}
