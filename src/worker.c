/*-------------------------------------------------------------------------
 *
 * worker.c
 *	  propagation = 'requires_new': the refresh in a transaction of its own.
 *
 * A login invalidates the user's previous credential at the service.  If the
 * refresh ran inside the caller's transaction and the caller then rolled
 * back, the fresh credential would be thrown away while the old one no longer
 * works.  So the caller, holding the user's lock, has a dynamic background
 * worker run the refresh steps (refresh.c) in a transaction of its own, at
 * the isolation level turnstile.isolation names, and waits for its answer.
 *
 * The caller and the worker share a dynamic shared memory segment: a small
 * fixed header saying what to refresh, and a message queue from the worker to
 * the caller.  The worker's output is redirected into the queue, so its
 * errors arrive as protocol ErrorResponse messages, with SQLSTATE, message,
 * detail and context intact, and are raised again in the caller.  A success
 * arrives as one message of type 'C' carrying the credential, sent only after
 * the worker has committed.
 *
 * Ordering with the user's lock.  The worker does not take the lock; the
 * caller holds it for the worker's whole life.  If the caller fails or is
 * terminated while it waits, a cleanup callback (run on ERROR and, through
 * before_shmem_exit, on FATAL, in both cases before the caller's locks are
 * released) terminates the worker and waits for it to be gone.  So the next
 * caller can never start a second login while a first one is still running:
 * the worker has either committed its result or rolled back.
 *
 * A failed refresh is recorded (failures, last_error, failed_at) in a
 * second transaction of the worker, after the first rolled back, so that the
 * record survives whatever the caller does; callers then get that failure at
 * once until retry_after has passed (credential.c).
 *
 *-------------------------------------------------------------------------
 */
#include "turnstile.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "libpq/pqformat.h"
#include "libpq/pqmq.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "storage/dsm.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/proc.h"
#include "storage/shm_mq.h"
#include "tcop/tcopprot.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

PGDLLEXPORT void ts_refresh_worker_main(Datum main_arg);

/* Room for the worker's messages; longer ones are streamed through it. */
#define TS_WORKER_QUEUE_SIZE	16384

/* How long a failing caller waits for its terminated worker to be gone. */
#define TS_WORKER_STOP_WAIT_MS	10000

/* What the caller tells the worker, at the start of the shared segment. */
typedef struct TsRefreshRequest
{
	Oid			database;
	Oid			user;			/* the extension's owner (see below) */
	int			xact_isolation; /* XACT_* level of the worker's transaction */
	bool		restricted;		/* the caller is in a security-restricted
								 * operation, and so is the refresh */
	int64		user_id;
	char		realm[(TURNSTILE_NAME_MAX_CHARS + 1) * MAX_MULTIBYTE_CHAR_LEN];
} TsRefreshRequest;

#define TS_WORKER_QUEUE_OFFSET	MAXALIGN(sizeof(TsRefreshRequest))

/* The caller's side of one refresh, for the cleanup callback. */
typedef struct TsWorkerCall
{
	BackgroundWorkerHandle *handle;
} TsWorkerCall;

/*
 * Terminate the worker and wait, with interrupts held, until it is gone.
 * Runs when the caller errors out or exits while its worker may still run.
 */
static void
ts_worker_stop(int code, Datum arg)
{
	TsWorkerCall *call = (TsWorkerCall *) DatumGetPointer(arg);
	pid_t		pid;

	TerminateBackgroundWorker(call->handle);

	HOLD_INTERRUPTS();
	for (int waited = 0; waited < TS_WORKER_STOP_WAIT_MS; waited += 10)
	{
		if (GetBackgroundWorkerPid(call->handle, &pid) == BGWH_STOPPED)
			break;
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 10, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
	}
	RESUME_INTERRUPTS();
}

/*
 * The deadlock detector cannot see that the caller waits for its worker (the
 * wait is on a queue, not a lock).  So when the worker is slow, look whether
 * it is waiting for a lock the caller's transaction holds: a row the caller
 * changed that the login function wants too, say.  Then neither can finish;
 * raise a deadlock error, and the cleanup stops the worker.
 */
static void
ts_worker_check_deadlock(BackgroundWorkerHandle *handle, const TsRealm *realm,
						 int64 user_id)
{
	pid_t		pid;
	ArrayType  *blockers;
	Datum	   *pids;
	int			npids;

	if (GetBackgroundWorkerPid(handle, &pid) != BGWH_STARTED)
		return;
	blockers = DatumGetArrayTypeP(DirectFunctionCall1(pg_blocking_pids,
													  Int32GetDatum(pid)));
	deconstruct_array(blockers, INT4OID, sizeof(int32), true, TYPALIGN_INT,
					  &pids, NULL, &npids);
	for (int i = 0; i < npids; i++)
		if (DatumGetInt32(pids[i]) == MyProcPid)
			ereport(ERROR,
					(errcode(ERRCODE_T_R_DEADLOCK_DETECTED),
					 errmsg("deadlock detected while refreshing user " INT64_FORMAT " in realm \"%s\"",
							user_id, realm->name),
					 errdetail("The refresh runs in a transaction of its own (propagation \"requires_new\"), and waits for a lock that the calling transaction holds."),
					 errhint("Do not change what the realm's login or validate function uses earlier in the same transaction, or register the realm with propagation => 'required'.")));
}

/*
 * Wait for the worker's answer: raise its error, pass its notices on, or
 * return the credential it stored, in the caller's memory context.
 */
static char *
ts_worker_receive(shm_mq_handle *mqh, BackgroundWorkerHandle *handle,
				  const TsRealm *realm, int64 user_id)
{
	for (;;)
	{
		Size		nbytes;
		void	   *data;
		StringInfoData msg;
		char		msgtype;
		shm_mq_result result = shm_mq_receive(mqh, &nbytes, &data, true);

		if (result == SHM_MQ_WOULD_BLOCK)
		{
			int			events = WaitLatch(MyLatch,
										   WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
										   DeadlockTimeout, PG_WAIT_EXTENSION);

			ResetLatch(MyLatch);
			CHECK_FOR_INTERRUPTS();
			if (events & WL_TIMEOUT)
				ts_worker_check_deadlock(handle, realm, user_id);
			continue;
		}
		if (result != SHM_MQ_SUCCESS)
			ereport(ERROR,
					(errcode(ERRCODE_OPERATOR_INTERVENTION),
					 errmsg("refresh of user " INT64_FORMAT " in realm \"%s\" ended without an answer",
							user_id, realm->name),
					 errdetail("Its background worker stopped before it reported a result.")));

		initStringInfo(&msg);
		appendBinaryStringInfo(&msg, data, nbytes);
		msgtype = pq_getmsgbyte(&msg);

		if (msgtype == 'C')
			return pstrdup(pq_getmsgstring(&msg));

		if (msgtype == 'E' || msgtype == 'N')
		{
			ErrorData	edata;

			pq_parse_errornotice(&msg, &edata);
			/* the worker's FATAL exit is this call's ERROR */
			if (edata.elevel > ERROR)
				edata.elevel = ERROR;
			ThrowErrorData(&edata);
		}
		/* anything else (say, a ReadyForQuery) carries nothing for us */
	}
}

/* What a caller waiting for a free worker slot is doing, for its errors. */
typedef struct TsSlotWait
{
	const TsRealm *realm;
	int64		user_id;
} TsSlotWait;

static void
ts_worker_slot_wait_context(void *arg)
{
	TsSlotWait *wait = (TsSlotWait *) arg;

	errcontext("waiting for a background worker slot to refresh user " INT64_FORMAT " in realm \"%s\"",
			   wait->user_id, wait->realm->name);
}

/*
 * Register the refresh worker, waiting for a free slot if every one of
 * max_worker_processes is taken (by other refreshes, or by anything else on
 * the server).  The postmaster tells nobody when a slot frees up, so the
 * wait polls, starting at 1 ms and backing off to 100 ms.  It stays
 * cancellable: statement_timeout and a cancel arrive as interrupts, and the
 * error context names the user and realm.  lock_timeout bounds it as it
 * bounds the wait for the user's lock, since for the caller both are waits
 * for a refresh to be able to start.
 */
static void
ts_worker_register(BackgroundWorker *worker, BackgroundWorkerHandle **handle,
				   const TsRealm *realm, int64 user_id)
{
	TsSlotWait	wait = {realm, user_id};
	ErrorContextCallback context;
	TimestampTz started;
	long		delay_ms = 1;

	if (RegisterDynamicBackgroundWorker(worker, handle))
		return;

	context.callback = ts_worker_slot_wait_context;
	context.arg = &wait;
	context.previous = error_context_stack;
	error_context_stack = &context;
	started = GetCurrentTimestamp();
	do
	{
		if (LockTimeout > 0 &&
			TimestampDifferenceExceeds(started, GetCurrentTimestamp(), LockTimeout))
			ereport(ERROR,
					(errcode(ERRCODE_LOCK_NOT_AVAILABLE),
					 errmsg("could not start the refresh of user " INT64_FORMAT " in realm \"%s\" within lock_timeout",
							user_id, realm->name),
					 errdetail("Every background worker slot (max_worker_processes) stayed taken for %d ms.",
							   LockTimeout)));
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 delay_ms, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
		delay_ms = Min(delay_ms * 2, 100);
	} while (!RegisterDynamicBackgroundWorker(worker, handle));
	error_context_stack = context.previous;
}

/*
 * Fill in a dynamic background worker of this library that connects to a
 * database, runs function once and is never restarted; the caller names it.
 */
void
ts_worker_describe(BackgroundWorker *worker, const char *function, const char *type)
{
	memset(worker, 0, sizeof(*worker));
	worker->bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker->bgw_start_time = BgWorkerStart_ConsistentState;
	worker->bgw_restart_time = BGW_NEVER_RESTART;
	strlcpy(worker->bgw_library_name, "pg_turnstile", BGW_MAXLEN);
	strlcpy(worker->bgw_function_name, function, BGW_MAXLEN);
	strlcpy(worker->bgw_type, type, BGW_MAXLEN);
}

/*
 * Run the refresh steps for a user in a background worker, in a transaction
 * of their own, and return the credential it committed.  The caller holds
 * the user's lock.
 */
char *
ts_refresh_in_worker(const TsRealm *realm, int64 user_id)
{
	dsm_segment *seg;
	TsRefreshRequest *request;
	shm_mq	   *mq;
	shm_mq_handle *mqh;
	BackgroundWorker worker;
	TsWorkerCall call;
	char	   *credential;

	seg = dsm_create(TS_WORKER_QUEUE_OFFSET + TS_WORKER_QUEUE_SIZE, 0);
	request = dsm_segment_address(seg);
	request->database = MyDatabaseId;
	/*
	 * Not the caller's role: a role's own settings (ALTER ROLE ... SET) apply
	 * when a worker connects as it, and the caller must not be able to shape
	 * the session in which the realm's functions run.
	 */
	request->user = ts_store_owner();
	request->xact_isolation =
		turnstile_isolation == TURNSTILE_SERIALIZABLE ? XACT_SERIALIZABLE :
		turnstile_isolation == TURNSTILE_REPEATABLE_READ ? XACT_REPEATABLE_READ :
		XACT_READ_COMMITTED;
	request->restricted = ts_store_caller_restricted();
	request->user_id = user_id;
	strlcpy(request->realm, realm->name, sizeof(request->realm));

	mq = shm_mq_create((char *) request + TS_WORKER_QUEUE_OFFSET, TS_WORKER_QUEUE_SIZE);
	shm_mq_set_receiver(mq, MyProc);
	mqh = shm_mq_attach(mq, seg, NULL);

	ts_worker_describe(&worker, "ts_refresh_worker_main", "pg_turnstile refresh");
	snprintf(worker.bgw_name, BGW_MAXLEN, "pg_turnstile refresh of user " INT64_FORMAT,
			 user_id);
	worker.bgw_main_arg = UInt32GetDatum(dsm_segment_handle(seg));
	worker.bgw_notify_pid = MyProcPid;

	ts_worker_register(&worker, &call.handle, realm, user_id);
	shm_mq_set_handle(mqh, call.handle);

	PG_ENSURE_ERROR_CLEANUP(ts_worker_stop, PointerGetDatum(&call));
	{
		credential = ts_worker_receive(mqh, call.handle, realm, user_id);

		/*
		 * The worker sends its answer after its commit and then exits.  Wait
		 * for that, so that no refresh worker outlives its call: otherwise a
		 * caller that refreshes again at once, or many callers refreshing
		 * different users, could find every worker slot still taken by
		 * workers that were only exiting.
		 */
		(void) WaitForBackgroundWorkerShutdown(call.handle);
	}
	PG_END_ENSURE_ERROR_CLEANUP(ts_worker_stop, PointerGetDatum(&call));

	dsm_detach(seg);
	return credential;
}

/*
 * The worker: refresh one user's credential in a transaction of its own,
 * commit, and send the credential to the caller.
 */
void
ts_refresh_worker_main(Datum main_arg)
{
	dsm_segment *seg;
	TsRefreshRequest *request;
	shm_mq	   *mq;
	shm_mq_handle *mqh;
	char	   *volatile credential = NULL;
	MemoryContext worker_context;
	ErrorData  *volatile failure = NULL;

	/* a terminate request aborts the transaction at the next interrupt check */
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();

	seg = dsm_attach(DatumGetUInt32(main_arg));
	if (seg == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("pg_turnstile refresh worker could not map its request")));
	request = dsm_segment_address(seg);
	mq = (shm_mq *) ((char *) request + TS_WORKER_QUEUE_OFFSET);
	shm_mq_set_sender(mq, MyProc);
	mqh = shm_mq_attach(mq, seg, NULL);
	pq_redirect_to_shm_mq(seg, mqh);

	BackgroundWorkerInitializeConnectionByOid(request->database, request->user, 0);
	worker_context = AllocSetContextCreate(TopMemoryContext, "pg_turnstile refresh",
										   ALLOCSET_DEFAULT_SIZES);

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	XactIsoLevel = request->xact_isolation;
	if (request->restricted)
	{
		Oid			userid;
		int			sec_context;

		/* abort restores the context this transaction started with */
		GetUserIdAndSecContext(&userid, &sec_context);
		SetUserIdAndSecContext(userid, sec_context | SECURITY_RESTRICTED_OPERATION);
	}
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
		StringInfoData msg;

		PopActiveSnapshot();
		CommitTransactionCommand();
		pq_beginmessage(&msg, 'C');
		pq_sendstring(&msg, credential);
		pq_endmessage(&msg);
		return;
	}

	/* roll the refresh back, record the failure for good, then report it */
	AbortCurrentTransaction();
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());
	ts_credential_record_failure(request->realm, request->user_id, failure);
	PopActiveSnapshot();
	CommitTransactionCommand();

	ThrowErrorData(failure);
}
