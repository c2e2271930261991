/*-------------------------------------------------------------------------
 *
 * refresh.c
 *	  Steps 4 and 5 of credential_get: revalidate, else log in, and store.
 *
 * The caller holds the user's lock and has just read the cached state under
 * it.  Where these steps run is the realm's propagation: "required" runs them
 * right here, inside the caller's transaction, so what they store commits or
 * rolls back with it; "requires_new" has a background worker run the very
 * same steps in a transaction of its own.  The worker's side is here too:
 * its main, its transaction around the steps, and the pool worker's loop;
 * how a worker is started, waited for and stopped, and how its answer
 * travels, is worker.c's (and pool.c's, for the pool).
 *
 *-------------------------------------------------------------------------
 */
#include "turnstile.h"

#include <signal.h>

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "commands/discard.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/dsm.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "tcop/tcopprot.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"

PGDLLEXPORT void ts_refresh_worker_main(Datum main_arg);
PGDLLEXPORT void ts_pool_worker_main(Datum main_arg);

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
 * steps run here, as with required; and when the calling transaction has
 * registered or replaced the realm, which the worker would not see, or see
 * as it was.  So do they in a refresh worker whose
 * login needs another user's credential when no worker slot is free: with
 * every slot taken by refresh workers waiting for one, none would free up.
 * They then commit with the worker's refresh, in a transaction that is not
 * the original caller's either.  *apart: whether the refresh ran, and
 * committed, in a transaction of its own.
 */
char *
ts_refresh(const TsRealm *realm, int64 user_id, const TsCredential *cached,
		   Snapshot snapshot, bool *apart)
{
	*apart = false;
	if (realm->propagation == TURNSTILE_REQUIRES_NEW && !cached->changed_here &&
		!realm->changed_here)
	{
		char	   *credential = ts_refresh_in_worker(realm, user_id);

		/* (NULL: a refresh worker's nested refresh, and no slot was free) */
		if (credential != NULL)
		{
			*apart = true;
			return credential;
		}
	}
	return ts_refresh_steps(realm, user_id, cached, snapshot);
}

/* The refreshes this backend has under way, innermost first. */
typedef struct TsRefreshInProgress
{
	int			realm_id;
	int64		user_id;
	struct TsRefreshInProgress *outer;
} TsRefreshInProgress;

static TsRefreshInProgress *ts_refreshes_in_progress = NULL;

/*
 * Refuse to refresh a user whose refresh this backend already has under way:
 * a login function that asks for the credential it is producing would
 * otherwise wait for a lock its own caller holds, or recurse without end.
 */
void
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

/*
 * Refresh a user's credential, refusing a refresh of the same user that is
 * already under way in this backend (a login that asks for its own user).
 * here_only: run the steps in this transaction whatever the propagation (the
 * refresh worker's own call).  *apart as for ts_refresh.
 */
char *
ts_credential_refresh(const TsRealm *realm, int64 user_id,
					  const TsCredential *cached, Snapshot snapshot, bool here_only,
					  bool *apart)
{
	TsRefreshInProgress self = {realm->realm_id, user_id, ts_refreshes_in_progress};
	char	   *credential;

	ts_credential_check_recursion(realm, user_id);
	check_stack_depth();
	ts_refreshes_in_progress = &self;
	PG_TRY();
	{
		*apart = false;
		credential = here_only ? ts_refresh_steps(realm, user_id, cached, snapshot) :
			ts_refresh(realm, user_id, cached, snapshot, apart);
	}
	PG_FINALLY();
	{
		ts_refreshes_in_progress = self.outer;
	}
	PG_END_TRY();

	return credential;
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
	bool		apart;

	ts_store_open(&session);
	snapshot = ts_policy_snapshot();
	ts_credential_read(&session, realm_name, user_id, snapshot, &realm, &cached);
	credential = cached.fresh ? cached.credential :
		MemoryContextStrdup(session.caller_context,
							ts_credential_refresh(&realm, user_id, &cached, snapshot, true,
												  &apart));
	ts_policy_release(snapshot);
	ts_store_close(&session);
	return credential;
}

/*
 * Refresh one user's credential in a transaction of its own, commit, and
 * send the credential to the caller; or roll back, record the failure in a
 * transaction of its own, and send the failure.  Returns either way.
 */
static void
ts_refresh_serve(const TsRefreshRequest *request, MemoryContext worker_context)
{
	char	   *volatile credential = NULL;
	ErrorData  *volatile failure = NULL;
	Oid			worker_userid;
	int			worker_sec_context;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	XactIsoLevel = request->xact_isolation;

	/*
	 * xact.c puts back the context a transaction started with on abort
	 * only; it is put back below after a commit too, so that a pool worker
	 * never carries one request's restriction into the next.
	 */
	GetUserIdAndSecContext(&worker_userid, &worker_sec_context);
	if (request->restricted)
		SetUserIdAndSecContext(worker_userid,
							   worker_sec_context | SECURITY_RESTRICTED_OPERATION);
	PushActiveSnapshot(GetTransactionSnapshot());
	PG_TRY();
	{
		char	   *result = ts_credential_refresh_here(request->realm, request->user_id);

		credential = MemoryContextStrdup(worker_context, result);
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(worker_context);
		failure = CopyErrorData();
		FlushErrorState();
	}
	PG_END_TRY();

	if (failure == NULL)
	{
		PopActiveSnapshot();
		CommitTransactionCommand();
		SetUserIdAndSecContext(worker_userid, worker_sec_context);
		MemoryContextSwitchTo(worker_context);
		ts_worker_send_credential(credential);
		return;
	}

	/* roll the refresh back, record the failure for good, then report it */
	AbortCurrentTransaction();
	SetUserIdAndSecContext(worker_userid, worker_sec_context);
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());
	ts_credential_record_failure(request->realm, request->user_id, failure);
	PopActiveSnapshot();
	CommitTransactionCommand();
	MemoryContextSwitchTo(worker_context);
	ts_worker_send_failure(failure);
}

/*
 * Leave nothing of a request's login in the pool worker's session for the
 * next one, which may be another realm's, registered by another role: what
 * DISCARD ALL does, as a connection pooler does between clients.  A login
 * can change settings for the session (undone already, see
 * ts_provider_invoke), take session-level advisory locks, create temporary
 * tables (which a later login, with pg_temp in its search_path, would see,
 * with their triggers), LISTEN and PREPARE.  A dynamic worker exits after
 * its one request instead.
 */
static void
ts_pool_worker_reset_session(void)
{
	DiscardStmt discard = {.type = T_DiscardStmt,.target = DISCARD_ALL};

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	DiscardCommand(&discard, true);
	CommitTransactionCommand();
}

/*
 * A worker of one refresh: attach to the request (first, so that even a
 * failure to connect reaches the caller), connect, refresh, exit.
 */
void
ts_refresh_worker_main(Datum main_arg)
{
	TsRefreshRequest *request;

	/* a terminate request aborts the transaction at the next interrupt check */
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();
	(void) ts_worker_attach(DatumGetUInt32(main_arg), &request);
	ts_worker_connect(request->database);
	ts_refresh_serve(request, AllocSetContextCreate(TopMemoryContext, "pg_turnstile refresh",
													 ALLOCSET_DEFAULT_SIZES));
}

/*
 * A worker of the refresh pool (pool.c): serve the requests queued for its
 * database one after another, and leave when there has been none for
 * turnstile.refresh_worker_idle_time, or when asked to make room.
 */
void
ts_pool_worker_main(Datum main_arg)
{
	Oid			database;
	MemoryContext worker_context;

	pqsignal(SIGTERM, die);
	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	BackgroundWorkerUnblockSignals();
	if (!ts_pool_worker_attach(DatumGetInt32(main_arg), &database))
		proc_exit(0);			/* its slot was given to a later start */
	ts_worker_connect(database);
	worker_context = AllocSetContextCreate(TopMemoryContext, "pg_turnstile refresh",
										   ALLOCSET_DEFAULT_SIZES);
	pgstat_report_activity(STATE_IDLE, NULL);

	for (;;)
	{
		dsm_handle handle;
		bool		leave;
		long		idle_ms;

		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}
		if (ts_pool_worker_take(&handle, &leave, &idle_ms))
		{
			TsRefreshRequest *request;
			dsm_segment *seg;

			/* whatever serving allocates outside transactions goes with it */
			MemoryContextSwitchTo(worker_context);
			seg = ts_worker_attach(handle, &request);
			pgstat_report_activity(STATE_RUNNING,
								   psprintf("refresh of user " INT64_FORMAT " in realm \"%s\"",
											request->user_id, request->realm));
			ts_refresh_serve(request, worker_context);
			/* detaching ends the redirection of the output to the queue */
			dsm_detach(seg);
			ts_pool_worker_done();
			ts_pool_worker_reset_session();
			MemoryContextSwitchTo(TopMemoryContext);
			MemoryContextReset(worker_context);
			pgstat_report_stat(false);
			pgstat_report_activity(STATE_IDLE, NULL);
			continue;
		}
		if (leave)
			break;
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 idle_ms, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
	}
	proc_exit(0);
}
