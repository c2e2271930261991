/*-------------------------------------------------------------------------
 *
 * credential.c
 *	  The per-user credential cache: realms and credential_get.
 *
 * credential_get answers "which credential should this user's work use now"
 * in one call, with the guarantee that a user is never logged in twice at
 * once and that a stampede of callers on an expired credential causes one
 * refresh, not one per caller:
 *
 *	1. Fresh: the cached credential is valid and before its refresh-ahead
 *	   window.  Return it; no lock, no call to the login service.  This is
 *	   the common case and costs one indexed read.
 *	2. Refresh ahead: still valid, but inside the window.  Try the user's
 *	   lock without waiting.  Whoever gets it refreshes; everybody else
 *	   returns the still-valid credential at once.
 *	3. Expired, invalidated or missing: become the refresher by taking the
 *	   user's exclusive lock, or, if someone holds it, wait for them in share
 *	   mode (all waiters then wake together).
 *
 * Once a caller holds a lock it reads the state again, because whoever held
 * the lock before may have refreshed it: then it simply returns that.  The
 * caller holding the exclusive lock with a stale state refreshes
 * (refresh.c): validate the old credential if the realm can, else log in.
 *
 * The lock is transaction-scoped, so it never outlives its transaction.  How
 * long it is held depends on what was done under it.  A waiter that finds
 * the work done did nothing, and releases the lock it took at once, so the
 * next waiter need not wait for the end of its transaction.  With
 * "requires_new" the refresher's work is committed by its worker before the
 * call returns, so it releases the lock then too.  With "required" the
 * refresh is part of the caller's transaction, and the lock must last as
 * long: a waiter may only look once the refresher's writes are committed
 * (or gone).
 *
 * A realm's login function that asks for the credential of the very user it
 * is logging in would find the lock already held by its own transaction and
 * the state still stale, and recurse without end; a backend-local list of
 * the refreshes in progress turns that into an error.
 *
 *-------------------------------------------------------------------------
 */
#include "turnstile.h"

#include "access/htup_details.h"
#include "access/xact.h"
#include "catalog/pg_proc.h"
#include "catalog/pg_type.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "access/transam.h"
#include "catalog/namespace.h"
#include "utils/builtins.h"
#include "utils/regproc.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"

PG_FUNCTION_INFO_V1(realm_set);
PG_FUNCTION_INFO_V1(realm_drop);
PG_FUNCTION_INFO_V1(realm_grant);
PG_FUNCTION_INFO_V1(realm_revoke);
PG_FUNCTION_INFO_V1(credential_get);
PG_FUNCTION_INFO_V1(credential_set);
PG_FUNCTION_INFO_V1(credential_invalidate);
PG_FUNCTION_INFO_V1(credential_list);

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

static TsStatement ts_stmt_invalidate = {
	"UPDATE turnstile.credential"
	"   SET invalidated = true, version = version OPERATOR(pg_catalog.+) 1"
	" WHERE realm_id OPERATOR(pg_catalog.=) $1 AND user_id OPERATOR(pg_catalog.=) $2"
	"   AND credential IS NOT NULL AND NOT invalidated"
	"   AND ($3::pg_catalog.text IS NULL OR credential OPERATOR(pg_catalog.=) $3)",
	3, {INT4OID, INT8OID, TEXTOID}
};

/* A failed refresh: counted, kept, and holding off retries ($3 message, $4 SQLSTATE). */
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

/* The smallest realm id not in use. */
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

/* the realm's credentials and grants go with it (ON DELETE CASCADE) */
static TsStatement ts_stmt_realm_delete = {
	"DELETE FROM turnstile.realm WHERE name OPERATOR(pg_catalog.=) $1",
	1, {TEXTOID}
};

/*
 * The columns of turnstile.credential_state, which ts_stmt_list returns
 * first, followed by the realm's id and registering role.
 */
static const Oid ts_credential_state_types[] = {
	TEXTOID, INT8OID, TEXTOID, TIMESTAMPTZOID, TIMESTAMPTZOID, TIMESTAMPTZOID,
	INT8OID, INT8OID, INT4OID, TEXTOID, TIMESTAMPTZOID
};
#define TS_CREDENTIAL_STATE_COLS	lengthof(ts_credential_state_types)
#define TS_LIST_REALM_ID			(TS_CREDENTIAL_STATE_COLS + 1)
#define TS_LIST_REGISTERED_BY		(TS_CREDENTIAL_STATE_COLS + 2)

static TsStatement ts_stmt_list = {
	"SELECT r.name, c.user_id,"
	"       CASE WHEN c.credential IS NULL THEN"
	"              CASE WHEN c.failures OPERATOR(pg_catalog.>) 0 THEN 'failed' ELSE 'missing' END"
	"            WHEN c.invalidated THEN 'invalidated'"
	"            WHEN c.validated_at OPERATOR(pg_catalog.+) r.ttl"
	"                 OPERATOR(pg_catalog.<=) pg_catalog.clock_timestamp() THEN 'expired'"
	"            WHEN c.validated_at OPERATOR(pg_catalog.+) r.ttl"
	"                 OPERATOR(pg_catalog.-) r.refresh_ahead"
	"                 OPERATOR(pg_catalog.<=) pg_catalog.clock_timestamp() THEN 'refresh_due'"
	"            ELSE 'fresh' END,"
	"       c.issued_at, c.validated_at, c.validated_at OPERATOR(pg_catalog.+) r.ttl,"
	"       c.logins, c.validations, c.failures, c.last_error,"
	"       c.failed_at OPERATOR(pg_catalog.+) r.retry_after,"
	"       r.realm_id, r.registered_by"
	"  FROM turnstile.credential c"
	"  JOIN turnstile.realm r ON r.realm_id OPERATOR(pg_catalog.=) c.realm_id"
	" ORDER BY r.name, c.user_id",
	0, {InvalidOid}
};

/* How often a waiter may lose the race for the exclusive lock before it queues. */
#define TS_SHARED_WAIT_ROUNDS 3

/* The refreshes this backend has under way, innermost first. */
typedef struct TsRefreshInProgress
{
	int			realm_id;
	int64		user_id;
	struct TsRefreshInProgress *outer;
} TsRefreshInProgress;

static TsRefreshInProgress *ts_refreshes_in_progress = NULL;

static void ts_credential_check_unchanged(TsStoreSession *session,
										  const char *realm_name, int64 user_id,
										  TsCredential *cached);

static char *
ts_realm_arg(FunctionCallInfo fcinfo, int argno)
{
	ts_require_arg(PG_ARGISNULL(argno), "realm");
	return ts_name_arg(PG_GETARG_DATUM(argno), "realm", NULL);
}

static int64
ts_user_id_arg(FunctionCallInfo fcinfo, int argno)
{
	ts_require_arg(PG_ARGISNULL(argno), "user_id");
	return PG_GETARG_INT64(argno);
}

/*
 * Read a realm and one user's cached credential with the given snapshot.
 * Raises 42704 if the realm does not exist.  Runs inside a store session;
 * the strings it returns live in the session's caller context.
 */
static void
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

	realm->realm_id = DatumGetInt32(ts_store_value(0, 1, &isnull));
	realm->name = MemoryContextStrdup(session->caller_context, realm_name);
	realm->login = DatumGetObjectId(ts_store_value(0, 2, &isnull));
	if (isnull)
		realm->login = InvalidOid;
	realm->validate = DatumGetObjectId(ts_store_value(0, 3, &isnull));
	if (isnull)
		realm->validate = InvalidOid;
	realm->registered_by = DatumGetObjectId(ts_store_value(0, 4, &isnull));
	propagation = ts_store_text(session, 0, 5);
	realm->propagation = strcmp(propagation, "required") == 0 ?
		TURNSTILE_REQUIRED : TURNSTILE_REQUIRES_NEW;

	cached->exists = DatumGetBool(ts_store_value(0, 6, &isnull));
	cached->credential = ts_store_text(session, 0, 7);
	cached->invalidated = DatumGetBool(ts_store_value(0, 8, &isnull)) && !isnull;
	cached->fresh = DatumGetBool(ts_store_value(0, 9, &isnull)) && !isnull;
	cached->usable = DatumGetBool(ts_store_value(0, 10, &isnull)) && !isnull;
	cached->version = DatumGetInt64(ts_store_value(0, 11, &isnull));
	if (isnull)
		cached->version = 0;
	cached->changed_here = cached->exists &&
		TransactionIdIsCurrentTransactionId(DatumGetTransactionId(ts_store_value(0, 12, &isnull)));
	cached->blocked = DatumGetBool(ts_store_value(0, 13, &isnull)) && !isnull;
	cached->last_error = ts_store_text(session, 0, 14);
	cached->last_sqlstate = ts_store_text(session, 0, 15);
	cached->blocked_until = ts_store_text(session, 0, 16);
	realm->search_path = ts_store_text(session, 0, 17);
	realm->login_signature = ts_store_text(session, 0, 18);
	realm->validate_signature = ts_store_text(session, 0, 19);
	cached->writer = cached->exists ?
		ts_xact_writing(DatumGetTransactionId(ts_store_value(0, 20, &isnull)), snapshot) :
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
static void
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

/*
 * Refuse to refresh a user whose refresh this backend already has under way:
 * a login function that asks for the credential it is producing would
 * otherwise wait for a lock its own caller holds, or recurse without end.
 */
static void
ts_credential_check_recursion(const TsRealm *realm, int64 user_id)
{
	for (TsRefreshInProgress *r = ts_refreshes_in_progress; r; r = r->outer)
		if (r->realm_id == realm->realm_id && r->user_id == user_id)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_RECURSION),
					 errmsg("infinite recursion detected in the refresh of user " INT64_FORMAT " in realm \"%s\"",
							user_id, realm->name),
					 errdetail("The realm's login or validate function used the credential it is refreshing.")));
}

static void
ts_credential_require_writable(int64 user_id, const char *realm_name)
{
	if (XactReadOnly)
		ts_require_writable(psprintf("the credential of user " INT64_FORMAT " in realm \"%s\"",
									 user_id, realm_name));
}

/*
 * With the user's lock held, take the policy's snapshot and read the state
 * again.  Under "repeatable read", raise 40001 if the state changed after
 * the caller's snapshot.  Returns the snapshot to write with.
 */
static Snapshot
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
static Snapshot
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
static void
ts_credential_unlock_written(const TsRealm *realm, int64 user_id, TsLockResult lock)
{
	if (lock == TS_LOCK_ACQUIRED && ts_keys_held_by_rows())
		ts_unlock_credential(realm->realm_id, user_id, ExclusiveLock);
}

/*
 * Under "repeatable read", raise 40001 if the user's state as read with the
 * caller's snapshot is not its latest committed state: the caller would act
 * on (or be handed) a credential that was replaced meanwhile.
 */
static void
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
			ereport(ERROR,
					(errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
					 errmsg("credential of user " INT64_FORMAT " in realm \"%s\" was changed by a concurrent transaction",
							user_id, realm_name),
					 errdetail("turnstile.isolation is \"%s\" and the credential changed after this transaction's snapshot was taken.",
							   turnstile_isolation == TURNSTILE_SERIALIZABLE ?
							   "serializable" : "repeatable read"),
					 errhint("Retry the transaction.")));
	}
}

/*
 * Refresh a user's credential, refusing a refresh of the same user that is
 * already under way in this backend (a login that asks for its own user).
 * here_only: run the steps in this transaction whatever the propagation (the
 * refresh worker's own call).
 */
static char *
ts_credential_refresh(const TsRealm *realm, int64 user_id,
					  const TsCredential *cached, Snapshot snapshot, bool here_only)
{
	TsRefreshInProgress self = {realm->realm_id, user_id, ts_refreshes_in_progress};
	char	   *credential;

	ts_credential_check_recursion(realm, user_id);
	check_stack_depth();
	ts_refreshes_in_progress = &self;
	PG_TRY();
	{
		credential = here_only ? ts_refresh_steps(realm, user_id, cached, snapshot) :
			ts_refresh(realm, user_id, cached, snapshot);
	}
	PG_FINALLY();
	{
		ts_refreshes_in_progress = self.outer;
	}
	PG_END_TRY();

	return credential;
}

/*
 * credential_get(user_id, realm = 'default') -> text
 */
Datum
credential_get(PG_FUNCTION_ARGS)
{
	int64		user_id = ts_user_id_arg(fcinfo, 0);
	char	   *realm_name = ts_realm_arg(fcinfo, 1);
	TsRealm		realm;
	TsCredential cached;
	Snapshot	snapshot;
	TsStoreSession session;
	char	   *credential;
	TsLockResult lock = TS_LOCK_NOT_AVAILABLE;
	bool		waited_for_writer = false;
	text	   *fresh = ts_credential_fresh_hit(realm_name, user_id);

	/* step 1, the common case, by direct index access (fastpath.c) */
	if (fresh)
		PG_RETURN_TEXT_P(fresh);

	ts_store_open(&session);

	/* steps 1 and 2: a valid credential is returned without waiting */
	snapshot = ts_policy_snapshot();
	ts_credential_read(&session, realm_name, user_id, snapshot, &realm, &cached);
	ts_policy_release(snapshot);
	if (cached.usable)
		ts_credential_check_unchanged(&session, realm_name, user_id, &cached);
	if (cached.fresh)
	{
		ts_store_close(&session);
		PG_RETURN_TEXT_P(cstring_to_text(cached.credential));
	}
	if (cached.usable)
	{
		/*
		 * A read-only transaction (a standby) cannot refresh, and after a
		 * failed refresh nobody tries before retry_after: use what is valid.
		 */
		if (!XactReadOnly && !cached.blocked)
			lock = ts_lock_credential(realm.realm_id, user_id, ExclusiveLock, false,
									  realm_name);
		if (lock != TS_LOCK_NOT_AVAILABLE)
		{
			TsCredential locked;

			/* a refresh whose transaction is still open holds the user */
			snapshot = ts_credential_read_locked(&session, realm_name, user_id,
												 &realm, &locked);
			if (!TransactionIdIsValid(locked.writer))
				cached = locked;
			else
			{
				ts_policy_release(snapshot);
				snapshot = InvalidSnapshot;
				if (lock == TS_LOCK_ACQUIRED)
					ts_unlock_credential(realm.realm_id, user_id, ExclusiveLock);
				lock = TS_LOCK_NOT_AVAILABLE;
			}
		}
		if (lock == TS_LOCK_NOT_AVAILABLE)
		{
			ts_store_close(&session);
			PG_RETURN_TEXT_P(cstring_to_text(cached.credential));
		}
	}
	else
	{
		snapshot = InvalidSnapshot;
		if (cached.blocked)
			ts_credential_raise_recorded_failure(&realm, user_id, &cached);
	}
	ts_credential_require_writable(user_id, realm_name);
	ts_credential_check_recursion(&realm, user_id);

	/*
	 * Step 3.  Try to become the refresher; if someone else holds the lock,
	 * wait for it in share mode, so that when it ends every waiter wakes at
	 * once and finds its committed result (an exclusive queue would hand the
	 * lock on one waiter at a time).  The share lock protects nothing but
	 * the read, so it goes at once.  A waiter that still finds the state
	 * stale tries again; after a few rounds of losing to other readers it
	 * queues for the exclusive lock instead, so nobody spins.
	 */
	for (int round = 0; snapshot == InvalidSnapshot; round++)
	{
		TsLockResult share;

		/*
		 * Once a refresher's transaction has ended, its result is most
		 * likely fresh: read it in share mode, with the other waiters,
		 * before anyone tries to become the refresher again.
		 */
		lock = waited_for_writer ? TS_LOCK_NOT_AVAILABLE :
			ts_lock_credential(realm.realm_id, user_id, ExclusiveLock,
							   round >= TS_SHARED_WAIT_ROUNDS, realm_name);
		waited_for_writer = false;
		if (lock != TS_LOCK_NOT_AVAILABLE)
		{
			snapshot = ts_credential_read_locked(&session, realm_name, user_id,
												 &realm, &cached);
			if (!TransactionIdIsValid(cached.writer))
				break;
			if (lock == TS_LOCK_ACQUIRED)
				ts_unlock_credential(realm.realm_id, user_id, ExclusiveLock);
			lock = TS_LOCK_NOT_AVAILABLE;
		}
		else
		{
			share = ts_lock_credential(realm.realm_id, user_id, ShareLock, true, realm_name);
			snapshot = ts_credential_read_locked(&session, realm_name, user_id,
												 &realm, &cached);
			if (share == TS_LOCK_ACQUIRED)
				ts_unlock_credential(realm.realm_id, user_id, ShareLock);
			if (!TransactionIdIsValid(cached.writer) && (cached.fresh || cached.blocked))
				break;
		}
		ts_policy_release(snapshot);
		snapshot = InvalidSnapshot;

		/*
		 * An open transaction that refreshed the user (with "required")
		 * holds it through its row: wait for it as for its lock, then look
		 * again.
		 */
		if (TransactionIdIsValid(cached.writer))
		{
			ts_credential_wait_writer(realm.realm_id, user_id, cached.writer, realm_name);
			waited_for_writer = true;
		}
	}

	if (cached.fresh || cached.blocked)
	{
		/*
		 * Someone else refreshed (or failed to): nothing is done under the
		 * lock, so a lock this call took goes at once, and the next waiter
		 * need not wait for the end of our transaction.
		 */
		if (lock == TS_LOCK_ACQUIRED)
			ts_unlock_credential(realm.realm_id, user_id, ExclusiveLock);
		if (cached.blocked && !cached.usable)
			ts_credential_raise_recorded_failure(&realm, user_id, &cached);
		credential = cached.credential;
	}
	else
	{
		credential = MemoryContextStrdup(session.caller_context,
										 ts_credential_refresh(&realm, user_id,
															   &cached, snapshot, false));

		/*
		 * A refresh in a transaction of its own is committed already: let
		 * the waiters have it now rather than at the end of our transaction,
		 * unless the lock was ours before this call.  One in our transaction
		 * wrote the user's row, which holds the user from now on.
		 */
		if (realm.propagation == TURNSTILE_REQUIRES_NEW && !cached.changed_here &&
			lock == TS_LOCK_ACQUIRED)
			ts_unlock_credential(realm.realm_id, user_id, ExclusiveLock);
		else
			ts_credential_unlock_written(&realm, user_id, lock);
	}
	ts_policy_release(snapshot);
	ts_store_close(&session);

	PG_RETURN_TEXT_P(cstring_to_text(credential));
}

/*
 * Steps 4 and 5 for the refresh worker: read the state again in the worker's
 * transaction and refresh it there.  The caller holds the user's lock.
 */
char *
ts_credential_refresh_here(const char *realm_name, int64 user_id)
{
	TsRealm		realm;
	TsCredential cached;
	TsStoreSession session;
	Snapshot	snapshot;
	char	   *credential;

	ts_store_open(&session);
	snapshot = ts_policy_snapshot();
	ts_credential_read(&session, realm_name, user_id, snapshot, &realm, &cached);
	credential = cached.fresh ? cached.credential :
		MemoryContextStrdup(session.caller_context,
							ts_credential_refresh(&realm, user_id, &cached, snapshot, true));
	ts_policy_release(snapshot);
	ts_store_close(&session);
	return credential;
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
 * credential_set(user_id, credential, realm = 'default') -> void
 */
Datum
credential_set(PG_FUNCTION_ARGS)
{
	int64		user_id = ts_user_id_arg(fcinfo, 0);
	char	   *credential;
	char	   *realm_name;
	TsRealm		realm;
	TsCredential cached;
	Snapshot	snapshot;
	TsLockResult lock;
	TsStoreSession session;

	ts_require_arg(PG_ARGISNULL(1), "credential");
	credential = text_to_cstring(PG_GETARG_TEXT_PP(1));
	if (credential[0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("credential must not be empty")));
	realm_name = ts_realm_arg(fcinfo, 2);
	ts_credential_require_writable(user_id, realm_name);

	ts_store_open(&session);
	snapshot = ts_policy_snapshot();
	ts_credential_read(&session, realm_name, user_id, snapshot, &realm, &cached);
	ts_policy_release(snapshot);

	ts_credential_check_recursion(&realm, user_id);
	snapshot = ts_credential_lock_exclusive(&session, realm_name, user_id, &realm,
											&cached, &lock);
	ts_credential_store(&realm, user_id, cached.exists, credential, 0, 0, snapshot);
	ts_policy_release(snapshot);
	ts_credential_unlock_written(&realm, user_id, lock);
	ts_store_close(&session);

	PG_RETURN_VOID();
}

/*
 * credential_invalidate(user_id, realm = 'default', credential = NULL)
 *	 -> boolean
 *
 * With credential given, only that credential is invalidated: a worker that
 * got a 401 for an old credential does not throw away the fresh one another
 * worker has stored meanwhile.
 */
Datum
credential_invalidate(PG_FUNCTION_ARGS)
{
	int64		user_id = ts_user_id_arg(fcinfo, 0);
	char	   *realm_name = ts_realm_arg(fcinfo, 1);
	TsRealm		realm;
	TsCredential cached;
	Snapshot	snapshot;
	TsLockResult lock;
	TsStoreSession session;
	Datum		args[3];
	char		nulls[3] = {' ', ' ', PG_ARGISNULL(2) ? 'n' : ' '};
	int			rows;

	ts_credential_require_writable(user_id, realm_name);
	ts_store_open(&session);
	snapshot = ts_policy_snapshot();
	ts_credential_read(&session, realm_name, user_id, snapshot, &realm, &cached);
	ts_policy_release(snapshot);

	ts_credential_check_recursion(&realm, user_id);
	snapshot = ts_credential_lock_exclusive(&session, realm_name, user_id, &realm,
											&cached, &lock);
	args[0] = Int32GetDatum(realm.realm_id);
	args[1] = Int64GetDatum(user_id);
	args[2] = PG_ARGISNULL(2) ? (Datum) 0 : PG_GETARG_DATUM(2);
	rows = ts_store_exec(&ts_stmt_invalidate, args, nulls, snapshot, false);
	ts_policy_release(snapshot);
	ts_credential_unlock_written(&realm, user_id, lock);
	ts_store_close(&session);

	PG_RETURN_BOOL(rows > 0);
}

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
		ereport(ERROR,
				(errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
				 errmsg("realm \"%s\" was registered by a concurrent transaction", realm_name),
				 errdetail("turnstile.isolation is \"%s\" and the realm was registered after this transaction's snapshot was taken.",
						   turnstile_isolation == TURNSTILE_SERIALIZABLE ?
						   "serializable" : "repeatable read"),
				 errhint("Retry the transaction.")));
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
	Interval   *zero = palloc0(sizeof(Interval));
	Interval   *longest = DatumGetIntervalP(DirectFunctionCall3(interval_in,
																 CStringGetDatum("100 years"),
																 ObjectIdGetDatum(InvalidOid),
																 Int32GetDatum(-1)));
	char	   *propagation;
	Datum		args[10];
	char		nulls[10] = {' ', ' ', ' ', ' ', ' ', ' ', ' ', ' ', ' ', ' '};
	TsStoreSession session;
	Snapshot	snapshot;
	bool		isnull;

	ts_require_arg(PG_ARGISNULL(1), "login");
	login = PG_GETARG_OID(1);
	ts_require_arg(PG_ARGISNULL(6), "propagation");
	propagation = text_to_cstring(PG_GETARG_TEXT_PP(6));

	if (!ts_interval_lt(zero, ttl))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("ttl of realm \"%s\" must be positive", realm_name)));
	/* beyond this, timestamps plus these intervals could leave their range */
	if (!ts_interval_lt(ttl, longest) || !ts_interval_lt(retry_after, longest))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("ttl and retry_after of realm \"%s\" must be less than 100 years",
						realm_name)));
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

	if (XactReadOnly)
		ts_require_writable(psprintf("realm \"%s\"", realm_name));

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

	if (XactReadOnly)
		ts_require_writable(psprintf("realm \"%s\"", realm_name));
	ts_lock_realm_registry();
	ts_store_open(&session);
	snapshot = ts_policy_snapshot();
	existed = ts_store_exec(&ts_stmt_realm_delete, args, NULL, snapshot, false) > 0;
	ts_policy_release(snapshot);
	ts_store_close(&session);

	PG_RETURN_BOOL(existed);
}

/*
 * credential_list() -> setof credential_state, for turnstile.credential_status:
 * the credentials of the realms the caller may use.
 */
Datum
credential_list(PG_FUNCTION_ARGS)
{
	Snapshot	snapshot;
	TsStoreSession session;
	int			rows;
	int32		last_realm = 0;
	bool		last_allowed = false;

	InitMaterializedSRF(fcinfo, 0);
	ts_check_row_type(fcinfo, TS_CREDENTIAL_STATE_COLS, ts_credential_state_types);
	ts_store_open(&session);
	snapshot = ts_policy_snapshot();
	rows = ts_store_exec(&ts_stmt_list, NULL, NULL, snapshot, true);
	for (int row = 0; row < rows; row++)
	{
		Datum		values[TS_CREDENTIAL_STATE_COLS];
		bool		nulls[TS_CREDENTIAL_STATE_COLS];
		bool		isnull;
		int32		realm_id = DatumGetInt32(ts_store_value(row, TS_LIST_REALM_ID, &isnull));

		/* rows come ordered by realm: check each realm once */
		if (realm_id != last_realm)
		{
			last_realm = realm_id;
			last_allowed = ts_realm_accessible(session.saved_userid, realm_id,
											   DatumGetObjectId(ts_store_value(row, TS_LIST_REGISTERED_BY, &isnull)),
											   snapshot);
		}
		if (!last_allowed)
			continue;
		for (int col = 0; col < TS_CREDENTIAL_STATE_COLS; col++)
			values[col] = ts_store_value(row, col + 1, &nulls[col]);
		ts_put_row(fcinfo, values, nulls);
	}
	ts_policy_release(snapshot);
	ts_store_close(&session);

	return (Datum) 0;
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
	if (XactReadOnly)
		ts_require_writable(psprintf("realm \"%s\"", realm_name));
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
