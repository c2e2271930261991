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
 * No lock outlives the call that took it.  A waiter that finds the work
 * done did nothing, and releases the lock it took at once.  With
 * "requires_new" the refresher's work is committed by its worker before the
 * call returns, so it releases the lock then too.  With "required" the
 * refresh is part of the caller's transaction, and a waiter may only look
 * once the refresher's writes are committed (or gone): the refresher's row
 * holds the user until then (keylock.c), and a caller that finds it written
 * by an open transaction waits for that transaction, then reads again.
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

PG_FUNCTION_INFO_V1(credential_get);
PG_FUNCTION_INFO_V1(credential_set);
PG_FUNCTION_INFO_V1(credential_invalidate);
PG_FUNCTION_INFO_V1(credential_list);

static TsStatement ts_stmt_invalidate = {
	"UPDATE turnstile.credential"
	"   SET invalidated = true, version = version OPERATOR(pg_catalog.+) 1"
	" WHERE realm_id OPERATOR(pg_catalog.=) $1 AND user_id OPERATOR(pg_catalog.=) $2"
	"   AND credential IS NOT NULL AND NOT invalidated"
	"   AND ($3::pg_catalog.text IS NULL OR credential OPERATOR(pg_catalog.=) $3)",
	3, {INT4OID, INT8OID, TEXTOID}
};

/* A failed refresh: counted, kept, and holding off retries ($3 message, $4 SQLSTATE). */
/* The smallest realm id not in use. */
/* the realm's credentials and grants go with it (ON DELETE CASCADE) */
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

/*
 * Step 2: a credential that is still valid, but inside its refresh-ahead
 * window.  Try the user's lock without waiting: whoever gets it, and finds
 * no refresh of another open transaction holding the user, refreshes; the
 * others use the valid credential at once.  Returns the snapshot read with
 * under the lock (with *lock and *cached as read there), or InvalidSnapshot
 * for a caller that is to return the credential it has.
 */
static Snapshot
ts_credential_try_refresh_ahead(TsStoreSession *session, const char *realm_name,
								int64 user_id, TsRealm *realm, TsCredential *cached,
								TsLockResult *lock)
{
	Snapshot	snapshot;
	TsCredential locked;

	/*
	 * A read-only transaction (a standby) cannot refresh, and after a failed
	 * refresh nobody tries before retry_after: use what is valid.
	 */
	if (XactReadOnly || cached->blocked)
		return InvalidSnapshot;
	*lock = ts_lock_credential(realm->realm_id, user_id, ExclusiveLock, false, realm_name);
	if (*lock == TS_LOCK_NOT_AVAILABLE)
		return InvalidSnapshot;

	/* a refresh whose transaction is still open holds the user */
	snapshot = ts_credential_read_locked(session, realm_name, user_id, realm, &locked);
	if (!TransactionIdIsValid(locked.writer))
	{
		*cached = locked;
		return snapshot;
	}
	ts_policy_release(snapshot);
	if (*lock == TS_LOCK_ACQUIRED)
		ts_unlock_credential(realm->realm_id, user_id, ExclusiveLock);
	*lock = TS_LOCK_NOT_AVAILABLE;
	return InvalidSnapshot;
}

/*
 * Step 3.  Try to become the refresher; if someone else holds the lock,
 * wait for it in share mode, so that when it ends every waiter wakes at
 * once and finds its committed result (an exclusive queue would hand the
 * lock on one waiter at a time).  The share lock protects nothing but the
 * read, so it goes at once.  A waiter that still finds the state stale tries
 * again; after a few rounds of losing to other readers it queues for the
 * exclusive lock instead, so nobody spins.  Returns the snapshot of the
 * last read, with *lock (the exclusive lock, or TS_LOCK_NOT_AVAILABLE after
 * a read in share mode that found the work done) and *cached as read then.
 */
static Snapshot
ts_credential_wait_turn(TsStoreSession *session, const char *realm_name,
						int64 user_id, TsRealm *realm, TsCredential *cached,
						TsLockResult *lock)
{
	bool		waited_for_writer = false;

	for (int round = 0;; round++)
	{
		Snapshot	snapshot;
		TsLockResult share;

		/*
		 * Once a refresher's transaction has ended, its result is most
		 * likely fresh: read it in share mode, with the other waiters,
		 * before anyone tries to become the refresher again.
		 */
		*lock = waited_for_writer ? TS_LOCK_NOT_AVAILABLE :
			ts_lock_credential(realm->realm_id, user_id, ExclusiveLock,
							   round >= TS_SHARED_WAIT_ROUNDS, realm_name);
		waited_for_writer = false;
		if (*lock != TS_LOCK_NOT_AVAILABLE)
		{
			snapshot = ts_credential_read_locked(session, realm_name, user_id,
												 realm, cached);
			if (!TransactionIdIsValid(cached->writer))
				return snapshot;
			if (*lock == TS_LOCK_ACQUIRED)
				ts_unlock_credential(realm->realm_id, user_id, ExclusiveLock);
			*lock = TS_LOCK_NOT_AVAILABLE;
		}
		else
		{
			share = ts_lock_credential(realm->realm_id, user_id, ShareLock, true, realm_name);
			snapshot = ts_credential_read_locked(session, realm_name, user_id,
												 realm, cached);
			if (share == TS_LOCK_ACQUIRED)
				ts_unlock_credential(realm->realm_id, user_id, ShareLock);
			if (!TransactionIdIsValid(cached->writer) && (cached->fresh || cached->blocked))
				return snapshot;
		}
		ts_policy_release(snapshot);

		/*
		 * An open transaction that refreshed the user (with "required")
		 * holds it through its row: wait for it as for its lock, then look
		 * again.
		 */
		if (TransactionIdIsValid(cached->writer))
		{
			ts_credential_wait_writer(realm->realm_id, user_id, cached->writer, realm_name);
			waited_for_writer = true;
		}
	}
}

/*
 * Steps 4 and 5, with the state read under the lock: use what another
 * caller did (or the failure it recorded), or refresh.  Then let the lock go
 * as soon as what was done under it allows.  Returns the credential, in the
 * caller's memory context.
 */
static char *
ts_credential_finish(TsStoreSession *session, const TsRealm *realm, int64 user_id,
					 const TsCredential *cached, Snapshot snapshot, TsLockResult lock)
{
	char	   *credential;
	bool		apart;

	if (cached->fresh || cached->blocked)
	{
		/*
		 * Someone else refreshed (or failed to): nothing is done under the
		 * lock, so a lock this call took goes at once, and the next waiter
		 * need not wait for the end of our transaction.
		 */
		if (lock == TS_LOCK_ACQUIRED)
			ts_unlock_credential(realm->realm_id, user_id, ExclusiveLock);
		if (cached->blocked && !cached->usable)
			ts_credential_raise_recorded_failure(realm, user_id, cached);
		return cached->credential;
	}

	credential = MemoryContextStrdup(session->caller_context,
									 ts_credential_refresh(realm, user_id, cached,
														   snapshot, false, &apart));

	/*
	 * A refresh in a transaction of its own is committed already: let the
	 * waiters have it now rather than at the end of our transaction, unless
	 * the lock was ours before this call.  One in our transaction wrote the
	 * user's row, which holds the user from now on.
	 */
	if (apart && lock == TS_LOCK_ACQUIRED)
		ts_unlock_credential(realm->realm_id, user_id, ExclusiveLock);
	else
		ts_credential_unlock_written(realm, user_id, lock);
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
	text	   *fresh = ts_credential_fresh_hit(realm_name, user_id);

	/* step 1, the common case, by direct index access (credential_state.c) */
	if (fresh)
		PG_RETURN_TEXT_P(fresh);

	ts_store_open(&session);

	/* steps 1 and 2: a valid credential is returned without waiting */
	ts_credential_read_now(&session, realm_name, user_id, &realm, &cached);
	if (cached.usable)
		ts_credential_check_unchanged(&session, realm_name, user_id, &cached);
	if (cached.fresh)
	{
		ts_store_close(&session);
		PG_RETURN_TEXT_P(cstring_to_text(cached.credential));
	}
	snapshot = InvalidSnapshot;
	if (cached.usable)
	{
		snapshot = ts_credential_try_refresh_ahead(&session, realm_name, user_id,
												   &realm, &cached, &lock);
		if (snapshot == InvalidSnapshot)
		{
			ts_store_close(&session);
			PG_RETURN_TEXT_P(cstring_to_text(cached.credential));
		}
	}
	else if (cached.blocked)
		ts_credential_raise_recorded_failure(&realm, user_id, &cached);
	ts_credential_require_writable(user_id, realm_name);
	ts_credential_check_recursion(&realm, user_id);

	if (snapshot == InvalidSnapshot)
		snapshot = ts_credential_wait_turn(&session, realm_name, user_id, &realm,
										   &cached, &lock);
	credential = ts_credential_finish(&session, &realm, user_id, &cached, snapshot, lock);
	ts_policy_release(snapshot);
	ts_store_close(&session);

	PG_RETURN_TEXT_P(cstring_to_text(credential));
}

/*
 * A call that writes a user's row (credential_set, credential_invalidate).
 */
typedef struct TsCredentialWrite
{
	TsStoreSession session;
	TsRealm		realm;
	TsCredential cached;
	Snapshot	snapshot;		/* to write with */
	TsLockResult lock;
} TsCredentialWrite;

/*
 * The opening of such a call: a first read checks the realm and the
 * caller's access to it; a write from inside the user's own refresh is
 * refused; then the user's exclusive lock, and a read under it.
 */
static void
ts_credential_write_begin(TsCredentialWrite *call, const char *realm_name, int64 user_id)
{
	ts_credential_require_writable(user_id, realm_name);
	ts_store_open(&call->session);
	ts_credential_read_now(&call->session, realm_name, user_id, &call->realm, &call->cached);
	ts_credential_check_recursion(&call->realm, user_id);
	call->snapshot = ts_credential_lock_exclusive(&call->session, realm_name, user_id,
												  &call->realm, &call->cached, &call->lock);
}

static void
ts_credential_write_end(TsCredentialWrite *call, int64 user_id)
{
	ts_policy_release(call->snapshot);
	ts_credential_unlock_written(&call->realm, user_id, call->lock);
	ts_store_close(&call->session);
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
	TsCredentialWrite call;

	ts_require_arg(PG_ARGISNULL(1), "credential");
	credential = text_to_cstring(PG_GETARG_TEXT_PP(1));
	if (credential[0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("credential must not be empty")));
	realm_name = ts_realm_arg(fcinfo, 2);

	ts_credential_write_begin(&call, realm_name, user_id);
	ts_credential_store(&call.realm, user_id, call.cached.exists, credential, 0, 0,
						call.snapshot);
	ts_credential_write_end(&call, user_id);

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
	TsCredentialWrite call;
	Datum		args[3];
	char		nulls[3] = {' ', ' ', PG_ARGISNULL(2) ? 'n' : ' '};
	int			rows;

	ts_credential_write_begin(&call, realm_name, user_id);
	args[0] = Int32GetDatum(call.realm.realm_id);
	args[1] = Int64GetDatum(user_id);
	args[2] = PG_ARGISNULL(2) ? (Datum) 0 : PG_GETARG_DATUM(2);
	rows = ts_store_exec(&ts_stmt_invalidate, args, nulls, call.snapshot, false);
	ts_credential_write_end(&call, user_id);

	PG_RETURN_BOOL(rows > 0);
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
