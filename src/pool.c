/*-------------------------------------------------------------------------
 *
 * pool.c
 *	  Background workers of pg_turnstile: describing and starting them, and
 *	  the refresh pool, long-lived refresh workers fed by a queue in shared
 *	  memory when the library is preloaded.
 *
 * Why a pool.  A "requires_new" refresh runs in a transaction of its own in a
 * background worker (worker.c).  Without preloading, every refresh starts a
 * worker process for itself: a fork, a connection to the database, catalog
 * caches filled from scratch, all to run one short transaction, and a slot of
 * max_worker_processes taken while it runs.  Many refreshes at once then
 * queue for those slots (worker.c waits for a free one).  With
 * shared_preload_libraries = 'pg_turnstile', the library keeps a queue of
 * refresh requests in shared memory instead, and workers that serve it one
 * request after another, so a refresh costs a queue entry, a latch and a
 * commit, not a process.
 *
 * Vocabulary:
 *
 *	entry	one queued refresh: the database, the dynamic shared memory
 *			segment of the caller (worker.c puts the request and the answer's
 *			message queue there), and who serves it.  A caller has at most one
 *			entry at a time, so there are MaxBackends of them.
 *	worker	one slot of the pool: a pool worker process connected to one
 *			database, or room for one.  turnstile.refresh_workers slots.
 *
 * Several databases.  A background worker stays connected to the database it
 * started in, so a pool worker serves one database.  Workers are started on
 * demand: a caller that queues an entry wakes an idle worker of its
 * database; if there is none and fewer are starting than entries wait, it
 * starts one in a free slot; if every slot is taken, it asks an idle worker
 * of another database to leave, and the next look starts one for its own.
 * A worker leaves by itself after turnstile.refresh_worker_idle_time without
 * work, so a database that stops refreshing gives its slots back.  Workers
 * still take slots of max_worker_processes; a start that finds none free is
 * tried again while the caller waits (worker.c asks every few milliseconds).
 *
 * Liveness.  A worker that exits for any reason (it is terminated, its start
 * fails, it errors out) marks its slot free and the entry it was serving
 * abandoned, in a before_shmem_exit callback, and sets the caller's latch:
 * the caller then raises an error rather than waiting for an answer that
 * will not come.  A slot stuck in "starting" (the postmaster could not fork)
 * is taken over after TS_POOL_START_TIMEOUT_MS; each start carries a
 * generation number, so a worker that starts that late finds its slot given
 * away and leaves.
 *
 * One refresh per user.  The pool does not serialize refreshes: the caller
 * holds the user's lock for as long as its entry is queued or served, and a
 * caller that fails while its entry is served terminates the worker and
 * waits for it to be gone before the lock is released (worker.c).  A pool
 * worker's own nested refreshes (a login that calls credential_get for
 * another user) do not use the pool: if every worker did that at once, none
 * would be left to serve them.
 *
 * Without preloading there is no pool.  PostgreSQL 17's named dynamic shared
 * memory segments could hold the queue without preloading there, but 15 has
 * none, and one behaviour on every supported version is worth more than a
 * faster path on some: there, every refresh starts its own worker.
 *
 *-------------------------------------------------------------------------
 */
#include "turnstile.h"

#include <signal.h>

#include "commands/dbcommands.h"
#include "funcapi.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "postmaster/bgworker.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/lwlock.h"
#include "storage/proc.h"
#include "storage/shmem.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"

PG_FUNCTION_INFO_V1(refresh_pool_state);

/* A slot stuck in "starting" longer than this is taken over. */
#define TS_POOL_START_TIMEOUT_MS	10000

typedef enum TsPoolEntryState
{
	TS_ENTRY_FREE = 0,
	TS_ENTRY_QUEUED,			/* waiting for a worker */
	TS_ENTRY_TAKEN,				/* a worker is serving it */
	TS_ENTRY_DONE,				/* the worker finished it */
	TS_ENTRY_ABANDONED			/* the worker exited while serving it */
} TsPoolEntryState;

typedef struct TsPoolEntry
{
	TsPoolEntryState state;
	Oid			database;
	dsm_handle	handle;			/* the caller's segment */
	PGPROC	   *caller;			/* for its latch */
	int			worker;			/* the slot serving it, or -1 */
	int64		user_id;		/* what it refreshes, for the view */
	TimestampTz since;			/* queued at, then taken at */
	char		realm[TURNSTILE_NAME_MAX_CHARS * MAX_MULTIBYTE_CHAR_LEN + 1];
} TsPoolEntry;

typedef enum TsPoolWorkerState
{
	TS_WORKER_UNUSED = 0,
	TS_WORKER_STARTING,			/* registered, not yet connected */
	TS_WORKER_IDLE,
	TS_WORKER_BUSY,
	TS_WORKER_LEAVING			/* asked to exit, to make room */
} TsPoolWorkerState;

typedef struct TsPoolWorker
{
	TsPoolWorkerState state;
	Oid			database;
	uint32		generation;		/* bumped at every start */
	pid_t		pid;			/* 0 until it runs */
	PGPROC	   *proc;
	int			entry;			/* the entry it serves, or -1 */
	TimestampTz since;			/* of the current state */
} TsPoolWorker;

typedef struct TsPoolShared
{
	LWLock	   *lock;			/* protects everything below */
	int			nworkers;
	int			nentries;
	TsPoolWorker workers[FLEXIBLE_ARRAY_MEMBER];
	/* followed by nentries TsPoolEntry */
} TsPoolShared;

/* What a pool worker is told at its start, in its bgw_extra. */
typedef struct TsPoolStart
{
	Oid			database;
	uint32		generation;
} TsPoolStart;

StaticAssertDecl(sizeof(TsPoolStart) <= BGW_EXTRALEN,
				 "a pool worker's start must fit in bgw_extra");

int			turnstile_refresh_workers = 4;
int			turnstile_refresh_worker_idle_time = 60;

static TsPoolShared *ts_pool = NULL;
static TsPoolEntry *ts_pool_entries = NULL;
static int	ts_pool_my_worker = -1;	/* in a pool worker: its slot */

static shmem_request_hook_type ts_prev_shmem_request_hook = NULL;
static shmem_startup_hook_type ts_prev_shmem_startup_hook = NULL;

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
 * Connect a background worker of this library to a database.  Not as any
 * particular role: the worker's code switches to the roles it needs (the
 * tables' owner in store.c, a realm's registering role in provider.c).
 * Connecting as the extension's owner would fail when that role cannot log
 * in, and would apply the owner's ALTER ROLE settings to the session; with no
 * role, PostgreSQL connects a background worker as the bootstrap superuser,
 * whose settings only a superuser can change.
 */
void
ts_worker_connect(Oid database)
{
	BackgroundWorkerInitializeConnectionByOid(database, InvalidOid, 0);
}

static Size
ts_pool_size(void)
{
	Size		size = offsetof(TsPoolShared, workers);

	size = add_size(size, mul_size(turnstile_refresh_workers, sizeof(TsPoolWorker)));
	size = MAXALIGN(size);
	return add_size(size, mul_size(MaxBackends, sizeof(TsPoolEntry)));
}

static void
ts_pool_shmem_request(void)
{
	if (ts_prev_shmem_request_hook)
		ts_prev_shmem_request_hook();
	RequestAddinShmemSpace(ts_pool_size());
	RequestNamedLWLockTranche("pg_turnstile", 1);
}

static void
ts_pool_shmem_startup(void)
{
	bool		found;

	if (ts_prev_shmem_startup_hook)
		ts_prev_shmem_startup_hook();

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	ts_pool = ShmemInitStruct("pg_turnstile refresh pool", ts_pool_size(), &found);
	ts_pool_entries = (TsPoolEntry *)
		((char *) ts_pool + MAXALIGN(offsetof(TsPoolShared, workers) +
									 turnstile_refresh_workers * sizeof(TsPoolWorker)));
	if (!found)
	{
		memset(ts_pool, 0, ts_pool_size());
		ts_pool->lock = &(GetNamedLWLockTranche("pg_turnstile"))->lock;
		ts_pool->nworkers = turnstile_refresh_workers;
		ts_pool->nentries = MaxBackends;
		for (int i = 0; i < ts_pool->nworkers; i++)
			ts_pool->workers[i].entry = -1;
		for (int i = 0; i < ts_pool->nentries; i++)
			ts_pool_entries[i].worker = -1;
	}
	LWLockRelease(AddinShmemInitLock);
}

/*
 * Called from _PG_init: with the library preloaded, ask for the pool's
 * shared memory.  Loaded any other way, there is no pool.
 */
void
ts_pool_init(void)
{
	if (!process_shared_preload_libraries_in_progress)
		return;
	ts_prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = ts_pool_shmem_request;
	ts_prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = ts_pool_shmem_startup;
}

/*
 * Should this backend's refreshes go to the pool?  Only if there is one, and
 * not from a pool worker itself (see the header comment).
 */
bool
ts_pool_serves_here(void)
{
	return ts_pool != NULL && ts_pool_my_worker < 0;
}

/*
 * Register a pool worker for slot i, which the caller has marked starting
 * with its database and generation.  Runs without the lock; a start that
 * finds no background worker slot gives the pool slot back.
 */
static void
ts_pool_start_worker(int i, TsPoolStart start)
{
	BackgroundWorker worker;

	ts_worker_describe(&worker, "ts_pool_worker_main", "pg_turnstile refresh pool");
	snprintf(worker.bgw_name, BGW_MAXLEN, "pg_turnstile refresh pool worker %d", i);
	worker.bgw_main_arg = Int32GetDatum(i);
	memcpy(worker.bgw_extra, &start, sizeof(start));
	worker.bgw_notify_pid = 0;
	if (RegisterDynamicBackgroundWorker(&worker, NULL))
		return;

	LWLockAcquire(ts_pool->lock, LW_EXCLUSIVE);
	if (ts_pool->workers[i].state == TS_WORKER_STARTING &&
		ts_pool->workers[i].generation == start.generation)
		ts_pool->workers[i].state = TS_WORKER_UNUSED;
	LWLockRelease(ts_pool->lock);
}

/*
 * See that some worker will serve the entries queued for a database: wake an
 * idle one, or claim a slot to start one in (returned, to be started once
 * the lock is released), or ask an idle worker of another database to make
 * room.  -1 if nothing is to be started.  Runs with the lock held.
 */
static int
ts_pool_provide(Oid database, TsPoolStart *start)
{
	int			queued = 0;
	int			starting = 0;
	int			unused = -1;
	int			idle_elsewhere = -1;
	TimestampTz now = GetCurrentTimestamp();

	for (int i = 0; i < ts_pool->nentries; i++)
		if (ts_pool_entries[i].state == TS_ENTRY_QUEUED &&
			ts_pool_entries[i].database == database)
			queued++;
	if (queued == 0)
		return -1;

	for (int i = 0; i < ts_pool->nworkers; i++)
	{
		TsPoolWorker *w = &ts_pool->workers[i];

		if (w->state == TS_WORKER_STARTING &&
			TimestampDifferenceExceeds(w->since, now, TS_POOL_START_TIMEOUT_MS))
			w->state = TS_WORKER_UNUSED;	/* its start never came */

		if (w->state == TS_WORKER_UNUSED)
		{
			if (unused < 0)
				unused = i;
		}
		else if (w->database != database)
		{
			if (w->state == TS_WORKER_IDLE && idle_elsewhere < 0)
				idle_elsewhere = i;
		}
		else if (w->state == TS_WORKER_IDLE)
		{
			SetLatch(&w->proc->procLatch);
			return -1;
		}
		else if (w->state == TS_WORKER_STARTING)
			starting++;
	}

	/* busy workers come back for more; start more while entries outnumber starts */
	if (starting >= queued)
		return -1;
	if (unused >= 0)
	{
		TsPoolWorker *w = &ts_pool->workers[unused];

		w->state = TS_WORKER_STARTING;
		w->database = database;
		w->generation++;
		w->pid = 0;
		w->proc = NULL;
		w->entry = -1;
		w->since = now;
		start->database = database;
		start->generation = w->generation;
		return unused;
	}
	if (idle_elsewhere >= 0)
	{
		ts_pool->workers[idle_elsewhere].state = TS_WORKER_LEAVING;
		SetLatch(&ts_pool->workers[idle_elsewhere].proc->procLatch);
	}
	return -1;
}

/*
 * Queue a refresh whose request and answer queue are in the given segment,
 * and see that a worker will serve it.  Returns the entry, or -1 if the
 * queue is full (then the caller uses a worker of its own).
 */
int
ts_pool_submit(dsm_handle handle, int64 user_id, const char *realm)
{
	int			entry = -1;
	int			start_slot;
	TsPoolStart start;

	LWLockAcquire(ts_pool->lock, LW_EXCLUSIVE);
	for (int i = 0; i < ts_pool->nentries && entry < 0; i++)
		if (ts_pool_entries[i].state == TS_ENTRY_FREE)
			entry = i;
	if (entry < 0)
	{
		LWLockRelease(ts_pool->lock);
		return -1;
	}
	ts_pool_entries[entry].state = TS_ENTRY_QUEUED;
	ts_pool_entries[entry].database = MyDatabaseId;
	ts_pool_entries[entry].handle = handle;
	ts_pool_entries[entry].caller = MyProc;
	ts_pool_entries[entry].worker = -1;
	ts_pool_entries[entry].user_id = user_id;
	ts_pool_entries[entry].since = GetCurrentTimestamp();
	strlcpy(ts_pool_entries[entry].realm, realm, sizeof(ts_pool_entries[entry].realm));
	start_slot = ts_pool_provide(MyDatabaseId, &start);
	LWLockRelease(ts_pool->lock);

	if (start_slot >= 0)
		ts_pool_start_worker(start_slot, start);
	return entry;
}

/*
 * Where a caller's entry stands: the pid of the worker serving it (0 if none
 * is yet), and whether it is still queued or was abandoned.  A queued entry
 * is provided for again, so that a worker start that failed is retried.
 */
pid_t
ts_pool_entry_status(int entry, bool *queued, bool *abandoned)
{
	TsPoolEntry *e = &ts_pool_entries[entry];
	pid_t		pid = 0;
	int			start_slot = -1;
	TsPoolStart start;

	LWLockAcquire(ts_pool->lock, LW_EXCLUSIVE);
	*queued = e->state == TS_ENTRY_QUEUED;
	*abandoned = e->state == TS_ENTRY_ABANDONED;
	if (e->state == TS_ENTRY_TAKEN)
		pid = ts_pool->workers[e->worker].pid;
	if (*queued)
		start_slot = ts_pool_provide(e->database, &start);
	LWLockRelease(ts_pool->lock);

	if (start_slot >= 0)
		ts_pool_start_worker(start_slot, start);
	return pid;
}

/*
 * The caller gives its entry up.  If a worker is serving it, the entry stays
 * and the worker's pid is returned: the caller must stop that worker, wait
 * until ts_pool_entry_settled says so, and give the entry up again.
 */
pid_t
ts_pool_withdraw(int entry)
{
	TsPoolEntry *e = &ts_pool_entries[entry];
	pid_t		pid = 0;

	LWLockAcquire(ts_pool->lock, LW_EXCLUSIVE);
	if (e->state == TS_ENTRY_TAKEN)
		pid = ts_pool->workers[e->worker].pid;
	else
		e->state = TS_ENTRY_FREE;
	LWLockRelease(ts_pool->lock);
	return pid;
}

/*
 * The caller has its answer: the entry goes, whatever the worker still does
 * (it committed before it answered, and ts_pool_worker_done leaves an entry
 * it no longer holds alone).
 */
void
ts_pool_release(int entry)
{
	LWLockAcquire(ts_pool->lock, LW_EXCLUSIVE);
	ts_pool_entries[entry].state = TS_ENTRY_FREE;
	ts_pool_entries[entry].worker = -1;
	LWLockRelease(ts_pool->lock);
}

/*
 * Has the worker that was serving the entry finished with it, one way or the
 * other?
 */
bool
ts_pool_entry_settled(int entry)
{
	bool		settled;

	LWLockAcquire(ts_pool->lock, LW_SHARED);
	settled = ts_pool_entries[entry].state != TS_ENTRY_TAKEN;
	LWLockRelease(ts_pool->lock);
	return settled;
}

/*
 * A pool worker's exit, whatever its cause: give the slot back, and tell the
 * caller of an entry it was serving that no answer will come.
 */
static void
ts_pool_worker_exit(int code, Datum arg)
{
	TsPoolWorker *w = &ts_pool->workers[ts_pool_my_worker];

	LWLockAcquire(ts_pool->lock, LW_EXCLUSIVE);
	/* a worker that left gave its slot back already; it may be reused */
	if (w->pid != MyProcPid)
	{
		LWLockRelease(ts_pool->lock);
		return;
	}
	if (w->entry >= 0)
	{
		TsPoolEntry *e = &ts_pool_entries[w->entry];

		if (e->state == TS_ENTRY_TAKEN && e->worker == ts_pool_my_worker)
		{
			e->state = TS_ENTRY_ABANDONED;
			SetLatch(&e->caller->procLatch);
		}
	}
	w->state = TS_WORKER_UNUSED;
	w->pid = 0;
	w->proc = NULL;
	w->entry = -1;
	LWLockRelease(ts_pool->lock);
}

/*
 * A pool worker's start: take its slot, unless the slot was given to a later
 * start meanwhile (then false: the worker must leave).
 */
bool
ts_pool_worker_attach(int slot, Oid *database)
{
	TsPoolStart start;
	TsPoolWorker *w;
	bool		mine;

	memcpy(&start, MyBgworkerEntry->bgw_extra, sizeof(start));
	if (ts_pool == NULL || slot < 0 || slot >= ts_pool->nworkers)
		return false;
	w = &ts_pool->workers[slot];
	LWLockAcquire(ts_pool->lock, LW_EXCLUSIVE);
	mine = w->state == TS_WORKER_STARTING && w->generation == start.generation;
	if (mine)
	{
		w->pid = MyProcPid;
		w->proc = MyProc;
		w->since = GetCurrentTimestamp();
	}
	LWLockRelease(ts_pool->lock);
	if (!mine)
		return false;
	ts_pool_my_worker = slot;
	*database = start.database;
	before_shmem_exit(ts_pool_worker_exit, (Datum) 0);
	return true;
}

/*
 * A pool worker takes the oldest entry queued for its database: true, with
 * the caller's segment.  False if there is none; the worker is then idle
 * (and *leave says whether it should exit: it was asked to make room, or
 * was idle for turnstile.refresh_worker_idle_time; its slot is free then).
 * *idle_ms says how long it may wait for work.
 */
bool
ts_pool_worker_take(dsm_handle *handle, bool *leave, long *idle_ms)
{
	TsPoolWorker *w = &ts_pool->workers[ts_pool_my_worker];
	TimestampTz now = GetCurrentTimestamp();
	int			oldest = -1;

	*leave = false;
	*idle_ms = 0;
	LWLockAcquire(ts_pool->lock, LW_EXCLUSIVE);
	if (w->state != TS_WORKER_LEAVING)
	{
		for (int i = 0; i < ts_pool->nentries; i++)
		{
			TsPoolEntry *e = &ts_pool_entries[i];

			if (e->state == TS_ENTRY_QUEUED && e->database == w->database &&
				(oldest < 0 || e->since < ts_pool_entries[oldest].since))
				oldest = i;
		}
	}
	if (oldest >= 0)
	{
		ts_pool_entries[oldest].state = TS_ENTRY_TAKEN;
		ts_pool_entries[oldest].worker = ts_pool_my_worker;
		ts_pool_entries[oldest].since = now;
		*handle = ts_pool_entries[oldest].handle;
		w->state = TS_WORKER_BUSY;
		w->entry = oldest;
		w->since = now;
	}
	else if (w->state == TS_WORKER_LEAVING)
		*leave = true;
	else
	{
		long		secs;
		int			usecs;

		if (w->state != TS_WORKER_IDLE)
		{
			w->state = TS_WORKER_IDLE;
			w->since = now;
		}
		TimestampDifference(now, TimestampTzPlusMilliseconds(w->since,
															  turnstile_refresh_worker_idle_time * 1000L),
							&secs, &usecs);
		*idle_ms = secs * 1000 + usecs / 1000;
		*leave = *idle_ms <= 0;
	}
	if (*leave)
	{
		/* leave now, under the lock, so that nobody wakes a worker that is going */
		w->state = TS_WORKER_UNUSED;
		w->pid = 0;
		w->proc = NULL;
	}
	LWLockRelease(ts_pool->lock);
	return oldest >= 0;
}

/*
 * A pool worker has answered the entry it took.  The caller may have given
 * the entry up already (it has its answer), and someone else may use it by
 * now: only an entry still taken by this worker is marked done.
 */
void
ts_pool_worker_done(void)
{
	TsPoolWorker *w = &ts_pool->workers[ts_pool_my_worker];

	LWLockAcquire(ts_pool->lock, LW_EXCLUSIVE);
	if (w->entry >= 0 && ts_pool_entries[w->entry].state == TS_ENTRY_TAKEN &&
		ts_pool_entries[w->entry].worker == ts_pool_my_worker)
		ts_pool_entries[w->entry].state = TS_ENTRY_DONE;
	w->entry = -1;
	LWLockRelease(ts_pool->lock);
}

/*
 * refresh_pool_state() -> setof (pid, database, state, user_id, realm, since):
 * the pool's workers, then the entries waiting for one; nothing when the
 * library is not preloaded.
 */
Datum
refresh_pool_state(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	static const char *const worker_states[] = {"unused", "starting", "idle", "refreshing", "leaving"};
	TsPoolWorker *workers;
	TsPoolEntry *entries;
	int			nworkers;
	int			nentries;

	InitMaterializedSRF(fcinfo, 0);
	if (ts_pool == NULL)
		return (Datum) 0;

	/* copy, so that no catalog lookup happens under the lock */
	LWLockAcquire(ts_pool->lock, LW_SHARED);
	nworkers = ts_pool->nworkers;
	nentries = ts_pool->nentries;
	workers = palloc(nworkers * sizeof(TsPoolWorker));
	entries = palloc(nentries * sizeof(TsPoolEntry));
	memcpy(workers, ts_pool->workers, nworkers * sizeof(TsPoolWorker));
	memcpy(entries, ts_pool_entries, nentries * sizeof(TsPoolEntry));
	LWLockRelease(ts_pool->lock);

	for (int i = 0; i < nworkers; i++)
	{
		TsPoolWorker *w = &workers[i];
		TsPoolEntry *e = w->state == TS_WORKER_BUSY && w->entry >= 0 ? &entries[w->entry] : NULL;
		char	   *database;
		Datum		values[6];
		bool		nulls[6] = {w->pid == 0, false, false, e == NULL, e == NULL, false};

		if (w->state == TS_WORKER_UNUSED)
			continue;
		database = get_database_name(w->database);
		values[0] = Int32GetDatum(w->pid);
		values[1] = database ? CStringGetTextDatum(database) : (Datum) 0;
		nulls[1] = database == NULL;
		values[2] = CStringGetTextDatum(worker_states[w->state]);
		values[3] = e ? Int64GetDatum(e->user_id) : (Datum) 0;
		values[4] = e ? CStringGetTextDatum(e->realm) : (Datum) 0;
		values[5] = TimestampTzGetDatum(w->since);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	for (int i = 0; i < nentries; i++)
	{
		TsPoolEntry *e = &entries[i];
		char	   *database;
		Datum		values[6];
		bool		nulls[6] = {true, false, false, false, false, false};

		if (e->state != TS_ENTRY_QUEUED)
			continue;
		database = get_database_name(e->database);
		values[0] = (Datum) 0;
		values[1] = database ? CStringGetTextDatum(database) : (Datum) 0;
		nulls[1] = database == NULL;
		values[2] = CStringGetTextDatum("queued");
		values[3] = Int64GetDatum(e->user_id);
		values[4] = CStringGetTextDatum(e->realm);
		values[5] = TimestampTzGetDatum(e->since);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}
