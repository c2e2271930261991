/*-------------------------------------------------------------------------
 *
 * worker.c
 *	  propagation = 'requires_new': the refresh in a transaction of its own.
 *
 * A login invalidates the user's previous credential at the service.  If the
 * refresh ran inside the caller's transaction and the caller then rolled
 * back, the fresh credential would be thrown away while the old one no longer
 * works.  So the caller, holding the user's lock, has a background worker run
 * the refresh steps (refresh.c) in a transaction of its own, at the isolation
 * level turnstile.isolation names, and waits for its answer.
 *
 * Which worker.  With the library preloaded, a worker of the refresh pool
 * (pool.c), which serves one request after another; otherwise, or when the
 * pool's queue is full, a dynamic background worker started for this one
 * refresh.  When every slot of max_worker_processes is taken, that start
 * waits for one, bounded by lock_timeout and statement_timeout: no refresh
 * fails for want of a worker.
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
 * caller holds it for as long as its refresh is queued or running.  If the
 * caller fails or is terminated while it waits, a cleanup callback (run on
 * ERROR and, through before_shmem_exit, on FATAL, in both cases before the
 * caller's locks are released) takes its request back if no worker has it
 * yet, and otherwise terminates the worker and waits for it to be gone, for
 * as long as that takes (with a WARNING now and then).  So the next caller
 * can never start a second login while a first one is still running: the
 * worker has either committed its result or rolled back.
 *
 * A failed refresh is recorded (failures, last_error, failed_at) in a
 * second transaction of the worker, after the first rolled back, so that the
 * record survives whatever the caller does; callers then get that failure at
 * once until retry_after has passed (credential.c).
 *
 *-------------------------------------------------------------------------
 */
#include "turnstile.h"

#include <signal.h>

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "libpq/pqformat.h"
#include "libpq/pqmq.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/dsm.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/proc.h"
#include "storage/shm_mq.h"
#include "storage/shm_toc.h"
#include "tcop/tcopprot.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

/* Room for the worker's messages; longer ones are streamed through it. */
#define TS_WORKER_QUEUE_SIZE	16384

/* Protocol message types of the answer, as the frontend protocol has them. */
#define TS_MSG_CREDENTIAL		'C'
#define TS_MSG_ERROR			'E'
#define TS_MSG_NOTICE			'N'

/* How often a caller stopping its worker says it is still waiting. */
#define TS_WORKER_STOP_WARN_MS	10000

/*
 * The shared segment of one refresh is a table of contents (shm_toc) with
 * two entries: the request and the answer's queue.  The magic number tells
 * a worker that the segment it mapped is one of ours.
 */
#define TS_WORKER_TOC_MAGIC		0x54535246	/* "TSRF" */
#define TS_WORKER_KEY_REQUEST	1
#define TS_WORKER_KEY_QUEUE		2

/* The caller's side of one refresh, for the wait and the cleanup callback. */
typedef struct TsWorkerCall
{
	const TsRealm *realm;
	int64		user_id;
	int			pool_entry;		/* in the refresh pool; -1: ... */
	BackgroundWorkerHandle *handle; /* ... a worker of its own */
	bool		answered;		/* its failure came: the worker is done with it */
} TsWorkerCall;

/*
 * The pid of the worker serving the call, 0 if none is (yet).  For a call in
 * the pool, also whether it still waits for a worker, or its worker exited.
 */
static pid_t
ts_worker_pid(const TsWorkerCall *call, bool *queued, bool *abandoned)
{
	pid_t		pid = 0;

	*queued = *abandoned = false;
	if (call->pool_entry >= 0)
		return ts_pool_entry_status(call->pool_entry, queued, abandoned);
	if (GetBackgroundWorkerPid(call->handle, &pid) != BGWH_STARTED)
		return 0;
	return pid;
}

/*
 * Wait, with interrupts held, until check(arg) is true, saying now and then
 * that the wait goes on: a worker that does not die at once still runs the
 * login, and a second login must not start beside it.
 */
static void
ts_worker_wait_gone(bool (*check) (const TsWorkerCall *), const TsWorkerCall *call)
{
	long		waited_ms = 0;

	HOLD_INTERRUPTS();
	while (!check(call))
	{
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 10, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		waited_ms += 10;
		if (waited_ms % TS_WORKER_STOP_WARN_MS == 0)
			ereport(WARNING,
					(errmsg("still waiting for the refresh worker of user " INT64_FORMAT " in realm \"%s\" to stop",
							call->user_id, call->realm->name),
					 errdetail("The user's lock is held until it has stopped, so that no second login runs beside it.")));
	}
	RESUME_INTERRUPTS();
}

static bool
ts_worker_own_gone(const TsWorkerCall *call)
{
	pid_t		pid;

	return GetBackgroundWorkerPid(call->handle, &pid) == BGWH_STOPPED;
}

static bool
ts_worker_pool_gone(const TsWorkerCall *call)
{
	return ts_pool_entry_settled(call->pool_entry);
}

/*
 * Stop the call's worker, if any, and wait until it is gone.  Runs when the
 * caller errors out or exits while its refresh may still run.
 */
static void
ts_worker_stop(int code, Datum arg)
{
	TsWorkerCall *call = (TsWorkerCall *) DatumGetPointer(arg);

	/*
	 * A worker that sent its failure has recorded it and committed; it only
	 * detaches and, a pool worker, marks the entry done, or exits.  Stopping
	 * it would gain nothing, and a pool worker signalled a moment too late
	 * would be serving another caller's refresh by then: wait instead.
	 */
	if (call->answered)
	{
		if (call->pool_entry >= 0)
		{
			ts_worker_wait_gone(ts_worker_pool_gone, call);
			(void) ts_pool_withdraw(call->pool_entry);
		}
		else if (call->handle != NULL)
			ts_worker_wait_gone(ts_worker_own_gone, call);
		return;
	}
	if (call->pool_entry >= 0)
	{
		pid_t		pid = ts_pool_withdraw(call->pool_entry);

		if (pid == 0)
			return;				/* no worker had it: nothing runs */
		kill(pid, SIGTERM);
		ts_worker_wait_gone(ts_worker_pool_gone, call);
		(void) ts_pool_withdraw(call->pool_entry);
		return;
	}
	if (call->handle == NULL)
		return;					/* never started */
	TerminateBackgroundWorker(call->handle);
	ts_worker_wait_gone(ts_worker_own_gone, call);
}

/*
 * The deadlock detector cannot see that the caller waits for its worker (the
 * wait is on a queue, not a lock).  So when the worker is slow, look whether
 * it is waiting for a lock the caller's transaction holds: a row the caller
 * changed that the login function wants too, say.  Then neither can finish;
 * raise a deadlock error, and the cleanup stops the worker.
 */
static void
ts_worker_check_deadlock(pid_t pid, const TsWorkerCall *call)
{
	ArrayType  *blockers;
	Datum	   *pids;
	int			npids;

	blockers = DatumGetArrayTypeP(DirectFunctionCall1(pg_blocking_pids,
													  Int32GetDatum(pid)));
	deconstruct_array(blockers, INT4OID, sizeof(int32), true, TYPALIGN_INT,
					  &pids, NULL, &npids);
	for (int i = 0; i < npids; i++)
		if (DatumGetInt32(pids[i]) == MyProcPid)
			ereport(ERROR,
					(errcode(ERRCODE_T_R_DEADLOCK_DETECTED),
					 errmsg("deadlock detected while refreshing user " INT64_FORMAT " in realm \"%s\"",
							call->user_id, call->realm->name),
					 errdetail("The refresh runs in a transaction of its own (propagation \"requires_new\"), and waits for a lock that the calling transaction holds."),
					 errhint("Do not change what the realm's login or validate function uses earlier in the same transaction, or register the realm with propagation => 'required'.")));
}

static void
ts_worker_no_answer(const TsWorkerCall *call)
{
	ereport(ERROR,
			(errcode(ERRCODE_OPERATOR_INTERVENTION),
			 errmsg("refresh of user " INT64_FORMAT " in realm \"%s\" ended without an answer",
					call->user_id, call->realm->name),
			 errdetail("Its background worker stopped before it reported a result.")));
}

/* What a caller waiting for a worker is doing, for its errors. */
static void
ts_worker_wait_context(void *arg)
{
	TsWorkerCall *call = (TsWorkerCall *) arg;

	errcontext("waiting for a background worker to refresh user " INT64_FORMAT " in realm \"%s\"",
			   call->user_id, call->realm->name);
}

/*
 * Sleep on the latch for at most timeout_ms, then take interrupts: a cancel
 * or statement_timeout raised here carries a context line naming the user
 * and realm.  (Only here: the worker's own errors carry their own context.)
 */
static int
ts_worker_sleep(const TsWorkerCall *call, long timeout_ms)
{
	ErrorContextCallback context;
	int			events;

	context.callback = ts_worker_wait_context;
	context.arg = (void *) call;
	context.previous = error_context_stack;
	error_context_stack = &context;
	events = WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
					   timeout_ms, PG_WAIT_EXTENSION);
	ResetLatch(MyLatch);
	CHECK_FOR_INTERRUPTS();
	error_context_stack = context.previous;
	return events;
}

/*
 * Raise 55P03 when a refresh could not start within lock_timeout: for the
 * caller, waiting for a worker is waiting for the refresh to be able to
 * start, as waiting for the user's lock is.
 */
static void
ts_worker_check_start_timeout(TimestampTz started, const TsWorkerCall *call)
{
	if (LockTimeout > 0 &&
		TimestampDifferenceExceeds(started, GetCurrentTimestamp(), LockTimeout))
		ereport(ERROR,
				(errcode(ERRCODE_LOCK_NOT_AVAILABLE),
				 errmsg("could not start the refresh of user " INT64_FORMAT " in realm \"%s\" within lock_timeout",
						call->user_id, call->realm->name),
				 errdetail("No background worker was free for %d ms.", LockTimeout)));
}

/*
 * Is this backend one of the library's refresh workers, its own or the
 * pool's?  (By name: this file cannot call into refresh.c, which has their
 * mains.)
 */
static bool
ts_worker_am_refresh_worker(void)
{
	return MyBgworkerEntry != NULL &&
		strcmp(MyBgworkerEntry->bgw_library_name, "pg_turnstile") == 0 &&
		(strcmp(MyBgworkerEntry->bgw_function_name, "ts_refresh_worker_main") == 0 ||
		 strcmp(MyBgworkerEntry->bgw_function_name, "ts_pool_worker_main") == 0);
}

/*
 * Start a worker of the call's own, waiting for a free slot if every one of
 * max_worker_processes is taken (by other refreshes, or by anything else on
 * the server).  The postmaster tells nobody when a slot frees up, so the
 * wait polls, starting at 1 ms and backing off to 100 ms.  It stays
 * cancellable, and lock_timeout bounds it.
 */
static bool
ts_worker_start_own(BackgroundWorker *worker, TsWorkerCall *call)
{
	TimestampTz started = GetCurrentTimestamp();
	long		delay_ms = 1;

	while (!RegisterDynamicBackgroundWorker(worker, &call->handle))
	{
		/*
		 * A refresh worker whose login needs another user's credential does
		 * not wait: every slot may be taken by refresh workers that all wait
		 * the same way, and none would ever free up.  It refreshes that user
		 * itself (ts_refresh_in_worker says no).
		 */
		if (ts_worker_am_refresh_worker())
			return false;
		ts_worker_check_start_timeout(started, call);
		(void) ts_worker_sleep(call, delay_ms);
		delay_ms = Min(delay_ms * 2, 100);
	}
	return true;
}

/*
 * Wait for the worker's answer: raise its error, pass its notices on, or
 * return the credential it stored, in the caller's memory context.
 *
 * Between messages the caller sleeps on its latch, which the queue sets.  It
 * wakes every so often all the same: while its request waits in the pool, to
 * see that a worker is coming (a start may have found no slot) and to keep
 * to lock_timeout; once a worker has it, every deadlock_timeout, to look for
 * a deadlock with it.
 */
static char *
ts_worker_receive(shm_mq_handle *mqh, TsWorkerCall *call)
{
	TimestampTz started = GetCurrentTimestamp();
	long		queued_delay_ms = 1;

	for (;;)
	{
		Size		nbytes;
		void	   *data;
		StringInfoData msg;
		char		msgtype;
		shm_mq_result result = shm_mq_receive(mqh, &nbytes, &data, true);

		if (result == SHM_MQ_WOULD_BLOCK)
		{
			bool		queued;
			bool		abandoned;
			pid_t		pid = ts_worker_pid(call, &queued, &abandoned);
			int			events;

			if (abandoned)
				ts_worker_no_answer(call);
			if (queued)
				ts_worker_check_start_timeout(started, call);
			else if (pid != 0)
				ts_worker_check_deadlock(pid, call);
			events = ts_worker_sleep(call, queued ? queued_delay_ms : DeadlockTimeout);
			if (queued && (events & WL_TIMEOUT))
				queued_delay_ms = Min(queued_delay_ms * 2, 100);
			continue;
		}
		if (result != SHM_MQ_SUCCESS)
			ts_worker_no_answer(call);

		initStringInfo(&msg);
		appendBinaryStringInfo(&msg, data, nbytes);
		msgtype = pq_getmsgbyte(&msg);

		/* in the database's encoding both ends: no client_encoding between them */
		if (msgtype == TS_MSG_CREDENTIAL)
			return pstrdup(pq_getmsgrawstring(&msg));

		if (msgtype == TS_MSG_ERROR || msgtype == TS_MSG_NOTICE)
		{
			ErrorData	edata;

			pq_parse_errornotice(&msg, &edata);
			/* the worker's FATAL exit is this call's ERROR */
			if (edata.elevel > ERROR)
				edata.elevel = ERROR;
			if (edata.elevel >= ERROR)
				call->answered = true;
			ThrowErrorData(&edata);
		}
		/* anything else (say, a ReadyForQuery) carries nothing for us */
	}
}

/*
 * Start a worker of the call's own for the request in seg; false if this is
 * a refresh worker and no slot is free.
 */
static bool
ts_worker_start_for(TsWorkerCall *call, dsm_segment *seg)
{
	BackgroundWorker worker;

	ts_worker_describe(&worker, "ts_refresh_worker_main", "pg_turnstile refresh");
	snprintf(worker.bgw_name, BGW_MAXLEN, "pg_turnstile refresh of user " INT64_FORMAT,
			 call->user_id);
	worker.bgw_main_arg = UInt32GetDatum(dsm_segment_handle(seg));
	worker.bgw_notify_pid = MyProcPid;
	return ts_worker_start_own(&worker, call);
}

/*
 * Run the refresh steps for a user in a background worker, in a transaction
 * of their own, and return the credential it committed.  The caller holds
 * the user's lock.  NULL, having started nothing, when the caller is itself
 * a refresh worker and no worker slot is free: it is to run the steps
 * itself, in its own transaction, which is already not its caller's.
 */
char *
ts_refresh_in_worker(const TsRealm *realm, int64 user_id)
{
	dsm_segment *seg;
	shm_toc_estimator estimate;
	Size		size;
	shm_toc    *toc;
	TsRefreshRequest *request;
	shm_mq	   *mq;
	shm_mq_handle *mqh;
	TsWorkerCall call = {realm, user_id, -1, NULL};
	char	   *credential = NULL;

	shm_toc_initialize_estimator(&estimate);
	shm_toc_estimate_chunk(&estimate, sizeof(TsRefreshRequest));
	shm_toc_estimate_chunk(&estimate, TS_WORKER_QUEUE_SIZE);
	shm_toc_estimate_keys(&estimate, 2);
	size = shm_toc_estimate(&estimate);
	seg = dsm_create(size, 0);
	toc = shm_toc_create(TS_WORKER_TOC_MAGIC, dsm_segment_address(seg), size);
	request = shm_toc_allocate(toc, sizeof(TsRefreshRequest));
	shm_toc_insert(toc, TS_WORKER_KEY_REQUEST, request);
	request->database = MyDatabaseId;
	request->xact_isolation = ts_policy_xact_isolation();
	request->restricted = ts_store_caller_restricted();
	request->user_id = user_id;
	strlcpy(request->realm, realm->name, sizeof(request->realm));

	mq = shm_mq_create(shm_toc_allocate(toc, TS_WORKER_QUEUE_SIZE), TS_WORKER_QUEUE_SIZE);
	shm_toc_insert(toc, TS_WORKER_KEY_QUEUE, mq);
	shm_mq_set_receiver(mq, MyProc);
	mqh = shm_mq_attach(mq, seg, NULL);

	PG_ENSURE_ERROR_CLEANUP(ts_worker_stop, PointerGetDatum(&call));
	{
		if (ts_pool_serves_here())
			call.pool_entry = ts_pool_submit(dsm_segment_handle(seg), user_id, realm->name);
		if (call.pool_entry < 0 && ts_worker_start_for(&call, seg))
			shm_mq_set_handle(mqh, call.handle);
		if (call.pool_entry >= 0 || call.handle != NULL)
			credential = ts_worker_receive(mqh, &call);

		/*
		 * A worker of our own sends its answer after its commit and then
		 * exits.  Wait for that, so that no such worker outlives its call:
		 * otherwise a caller that refreshes again at once, or many callers
		 * refreshing different users, could find every worker slot still
		 * taken by workers that were only exiting.  A pool worker goes on to
		 * the next request.
		 */
		if (call.handle != NULL)
			(void) WaitForBackgroundWorkerShutdown(call.handle);
	}
	PG_END_ENSURE_ERROR_CLEANUP(ts_worker_stop, PointerGetDatum(&call));

	/* the answer came after the worker's commit: the entry may go */
	if (call.pool_entry >= 0)
		ts_pool_release(call.pool_entry);
	dsm_detach(seg);
	return credential;
}

/*
 * Attach to a caller's request and send this process's output to its queue.
 */
dsm_segment *
ts_worker_attach(dsm_handle handle, TsRefreshRequest **request)
{
	dsm_segment *seg = dsm_attach(handle);
	shm_toc    *toc;
	shm_mq	   *mq;
	shm_mq_handle *mqh;

	if (seg == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("pg_turnstile refresh worker could not map its request")));
	/* the mapping outlives this worker's transactions; detached explicitly */
	dsm_pin_mapping(seg);
	toc = shm_toc_attach(TS_WORKER_TOC_MAGIC, dsm_segment_address(seg));
	if (toc == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("pg_turnstile refresh worker mapped a segment that is not a refresh request")));
	*request = shm_toc_lookup(toc, TS_WORKER_KEY_REQUEST, false);
	mq = shm_toc_lookup(toc, TS_WORKER_KEY_QUEUE, false);
	shm_mq_set_sender(mq, MyProc);
	mqh = shm_mq_attach(mq, seg, NULL);
	pq_redirect_to_shm_mq(seg, mqh);
	return seg;
}

/*
 * Send the refreshed credential to the caller, through the redirected output.
 */
void
ts_worker_send_credential(const char *credential)
{
	StringInfoData msg;

	/*
	 * As it is, with its terminating NUL: pq_sendstring and pq_getmsgstring
	 * would convert it to and from a client_encoding, the caller's on the
	 * receiving end, which is not the worker's
	 */
	pq_beginmessage(&msg, TS_MSG_CREDENTIAL);
	pq_sendbytes(&msg, credential, strlen(credential) + 1);
	pq_endmessage(&msg);
}

/*
 * Send a failure to the caller, through the redirected output, and go on.
 */
void
ts_worker_send_failure(ErrorData *failure)
{
	PG_TRY();
	{
		ThrowErrorData(failure);
	}
	PG_CATCH();
	{
		EmitErrorReport();
		FlushErrorState();
	}
	PG_END_TRY();
}
