/*-------------------------------------------------------------------------
 *
 * grow.c
 *	  A hot counter whose slots are all busy gets more of them.
 *
 * A hot increment holds its slot until its transaction ends, and a commit
 * ends with a WAL flush.  So a hot counter serves at most one increment per
 * slot per flush: with 64 writers on 16 slots, four queue behind every slot
 * and each waits for the flush of the one before.  A counter created with
 * slots = S therefore grows when an increment finds every one of its S
 * slots held by other transactions: it gets 2 * S slots, up to
 * turnstile.hot_slots_max.  Growth stops by itself once there are more slots
 * than transactions that increment the counter at once, because then an
 * increment always finds one free.
 *
 * Why a background worker.  Growing rewrites the slot count in every slot row
 * and adds rows, under the counter's ExclusiveLock, so that every snapshot
 * sees either all the old rows or all the new ones (readers check that each
 * row shows the slot count they expect).  If the increment that found the
 * slots busy did that itself, it would keep the ExclusiveLock until its
 * caller's transaction ended, and every increment of the counter would wait
 * for that transaction, however long it ran.  The worker's transaction only
 * grows the counter and commits.
 *
 * One grower at a time.  The increment that asks takes the counter's growth
 * lock without waiting and keeps it until its transaction ends; finding it
 * taken means someone asked already.  The worker waits for the same lock
 * before it looks, so it runs after its asker has finished and never beside
 * another grower of the counter, and it grows only if the counter still has
 * the slot count the asker saw.  Asking never fails an increment: without a
 * free worker slot the asker gives the growth lock back, and the next
 * increment that finds every slot busy asks again.
 *
 *-------------------------------------------------------------------------
 */
#include "turnstile.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "miscadmin.h"
#include "postmaster/bgworker.h"
#include "storage/ipc.h"
#include "storage/lock.h"
#include "tcop/tcopprot.h"
#include "utils/builtins.h"
#include "utils/snapmgr.h"

PGDLLEXPORT void ts_grow_worker_main(Datum main_arg);

/* What the asker tells the worker, in its bgw_extra. */
typedef struct TsGrowRequest
{
	Oid			database;
	uint64		key;			/* the counter's lock key */
	int32		from_slots;		/* the slot count the asker found all busy */
	int32		to_slots;
} TsGrowRequest;

StaticAssertDecl(sizeof(TsGrowRequest) <= BGW_EXTRALEN,
				 "a growth request must fit in bgw_extra");

/*
 * The hot counter with this key and slot count, in the worker's snapshot;
 * NULL if there is none (dropped, or grown by someone else meanwhile).
 */
/* turnstile.hot_slots_max (guc.c) */
int			turnstile_hot_slots_max = TURNSTILE_SLOTS_MAX;

static TsStatement ts_stmt_find = {
	"SELECT name FROM turnstile.counter_slot"
	" WHERE slot OPERATOR(pg_catalog.=) 0 AND slots OPERATOR(pg_catalog.=) $2"
	"   AND turnstile.counter_lock_key(name) OPERATOR(pg_catalog.=) $1",
	2, {INT8OID, INT4OID}
};

/*
 * Give counter $1 $3 slots instead of $2: every row shows the new count, and
 * the new slots start at zero.  Neither the value nor the version moves (the
 * sums over the slots stay the same), nor updated_at: the new rows carry the
 * counter's created_at, like the rows it was created with.  The new slots of
 * a bounded counter (on either side: see TsShares in counter.c) start with
 * no share of its room ([0, 0]), as the shares of the old ones add up to the
 * bounds already; ts_stmt_share_out then deals the room out over them all.
 */
static TsStatement ts_stmt_grow = {
	"WITH grown AS ("
	"  UPDATE turnstile.counter_slot SET slots = $3"
	"   WHERE name OPERATOR(pg_catalog.=) $1 AND slots OPERATOR(pg_catalog.=) $2"
	"  RETURNING created_at, lower, upper)"
	" INSERT INTO turnstile.counter_slot"
	"        (name, slot, slots, value, version, created_at, updated_at,"
	"         lower, upper, slot_lower, slot_upper)"
	" SELECT $1, s, $3, 0, 0, c.created_at, c.created_at, c.lower, c.upper,"
	"        CASE WHEN c.lower IS NOT NULL OR c.upper IS NOT NULL THEN 0 END,"
	"        CASE WHEN c.lower IS NOT NULL OR c.upper IS NOT NULL THEN 0 END"
	"   FROM pg_catalog.generate_series($2, $3 OPERATOR(pg_catalog.-) 1) s,"
	"        (SELECT pg_catalog.min(created_at) AS created_at,"
	"                pg_catalog.min(lower) AS lower, pg_catalog.min(upper) AS upper"
	"           FROM grown) c"
	"  WHERE c.created_at IS NOT NULL",
	3, {TEXTOID, INT4OID, INT4OID}
};

/*
 * Deal the room of bounded counter $1 out over all its slots again, after
 * it grew: each slot keeps its value and gets an even share of the room
 * between the counter's value and each bound (the end of the bigint range
 * on an open side), slot 0 also what does not divide; so the shares add up
 * to the bounds.  Without it the new slots would have none, and the first
 * increment on each would take the exclusive path, whose rewrite of every
 * slot holds them all until it commits: increments that find every slot
 * busy ask for growth, and the counter would grow again and again.  Values,
 * versions and times stay as they are.  (OPERATOR(pg_catalog.x) operators
 * all bind alike, left to right: the parentheses are needed.)
 */
static TsStatement ts_stmt_share_out = {
	"UPDATE turnstile.counter_slot s"
	"   SET slot_lower = (s.value OPERATOR(pg_catalog.-)"
	"                     CASE WHEN s.slot OPERATOR(pg_catalog.=) 0"
	"                          THEN t.room_lower OPERATOR(pg_catalog.-)"
	"                               ((t.n OPERATOR(pg_catalog.-) 1) OPERATOR(pg_catalog.*) t.share_lower)"
	"                          ELSE t.share_lower END)::pg_catalog.int8,"
	"       slot_upper = (s.value OPERATOR(pg_catalog.+)"
	"                     CASE WHEN s.slot OPERATOR(pg_catalog.=) 0"
	"                          THEN t.room_upper OPERATOR(pg_catalog.-)"
	"                               ((t.n OPERATOR(pg_catalog.-) 1) OPERATOR(pg_catalog.*) t.share_upper)"
	"                          ELSE t.share_upper END)::pg_catalog.int8"
	"  FROM (SELECT r.*,"
	"               pg_catalog.div(r.room_lower, r.n) AS share_lower,"
	"               pg_catalog.div(r.room_upper, r.n) AS share_upper"
	"          FROM (SELECT pg_catalog.sum(value) OPERATOR(pg_catalog.-)"
	"                       pg_catalog.min(lower_or_min) AS room_lower,"
	"                       pg_catalog.min(upper_or_max) OPERATOR(pg_catalog.-)"
	"                       pg_catalog.sum(value) AS room_upper,"
	"                       pg_catalog.max(slots)::pg_catalog.numeric AS n"
	"                  FROM (SELECT value, slots,"
	"                               CASE WHEN lower IS NULL THEN -9223372036854775808"
	"                                    ELSE lower END::pg_catalog.numeric AS lower_or_min,"
	"                               CASE WHEN upper IS NULL THEN 9223372036854775807"
	"                                    ELSE upper END::pg_catalog.numeric AS upper_or_max"
	"                          FROM turnstile.counter_slot"
	"                         WHERE name OPERATOR(pg_catalog.=) $1"
	"                           AND (lower IS NOT NULL OR upper IS NOT NULL)) b) r) t"
	" WHERE s.name OPERATOR(pg_catalog.=) $1 AND t.n IS NOT NULL",
	1, {TEXTOID}
};

/* the same as ts_stmt_grow until ALTER EXTENSION UPDATE to 1.5, when counters have no bounds */
static TsStatement ts_stmt_grow_1_4 = {
	"WITH grown AS ("
	"  UPDATE turnstile.counter_slot SET slots = $3"
	"   WHERE name OPERATOR(pg_catalog.=) $1 AND slots OPERATOR(pg_catalog.=) $2"
	"  RETURNING created_at)"
	" INSERT INTO turnstile.counter_slot"
	"        (name, slot, slots, value, version, created_at, updated_at)"
	" SELECT $1, s, $3, 0, 0, c.created_at, c.created_at"
	"   FROM pg_catalog.generate_series($2, $3 OPERATOR(pg_catalog.-) 1) s,"
	"        (SELECT pg_catalog.min(created_at) AS created_at FROM grown) c"
	"  WHERE c.created_at IS NOT NULL",
	3, {TEXTOID, INT4OID, INT4OID}
};

/*
 * Ask for a counter to grow from slots to twice as many; called by an
 * increment that found every slot held by another transaction, before it
 * waits for one.  Returns at once: the growth, if any, happens after this
 * transaction ends.
 */
void
ts_counter_request_growth(uint64 key, int slots, const char *name)
{
	TsGrowRequest request;
	BackgroundWorker worker;
	BackgroundWorkerHandle *handle;

	if (slots >= turnstile_hot_slots_max)
		return;
	if (ts_try_lock_counter_growth(key) != TS_LOCK_ACQUIRED)
		return;					/* someone asked already, maybe this transaction */

	/* this backend's slot count may be out of date: then it grew already */
	if (ts_counter_slots_peek(name) != slots)
		return;

	request.database = MyDatabaseId;
	request.key = key;
	request.from_slots = slots;
	request.to_slots = Min(slots * 2, turnstile_hot_slots_max);

	ts_worker_describe(&worker, "ts_grow_worker_main", "pg_turnstile growth");
	snprintf(worker.bgw_name, BGW_MAXLEN, "pg_turnstile growth of a hot counter to %d slots",
			 request.to_slots);
	memcpy(worker.bgw_extra, &request, sizeof(request));
	worker.bgw_notify_pid = 0;

	if (!RegisterDynamicBackgroundWorker(&worker, &handle))
	{
		/*
		 * No background worker slot is free now.  Give the growth lock back,
		 * so that the next increment that finds every slot busy asks again,
		 * rather than nobody until this transaction ends.
		 */
		ts_unlock_counter_growth(key);
		ereport(DEBUG1,
				(errmsg("hot counter \"%s\" did not grow yet: no background worker slot free",
						name)));
	}
}

/*
 * The worker: grow one counter in a transaction of its own.
 */
void
ts_grow_worker_main(Datum main_arg)
{
	TsGrowRequest request;
	TsStoreSession session;
	char	   *name = NULL;

	memcpy(&request, MyBgworkerEntry->bgw_extra, sizeof(request));
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();
	ts_worker_connect(request.database);

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	/* each statement below must see what committed before it started */
	XactIsoLevel = XACT_READ_COMMITTED;

	/* wait for the asker's transaction, and for any other grower */
	ts_lock_counter_growth(request.key);

	PushActiveSnapshot(GetTransactionSnapshot());
	ts_store_open(&session);
	{
		Datum		args[3] = {Int64GetDatum((int64) request.key),
		Int32GetDatum(request.from_slots)};

		if (ts_store_exec(&ts_stmt_find, args, NULL, InvalidSnapshot, true) == 1)
			name = ts_store_text(&session, 0, 1);
		if (name != NULL)
		{
			/*
			 * The ExclusiveLock waits for the increments in flight and holds
			 * off new ones; a snapshot taken after it then sees every slot's
			 * final value, and no slot row is locked by anyone.
			 */
			ts_lock_counter(request.key, ExclusiveLock, name);
			for (;;)
			{
				/* increments whose transactions are open hold their slots' rows */
				TransactionId writer = ts_counter_writer(name);

				if (!TransactionIdIsValid(writer))
					break;
				ts_unlock_counter(request.key, ExclusiveLock);
				ts_counter_wait_writer(request.key, writer, name);
				ts_lock_counter(request.key, ExclusiveLock, name);
			}
			PopActiveSnapshot();
			PushActiveSnapshot(GetTransactionSnapshot());

			args[0] = CStringGetTextDatum(name);
			args[2] = Int32GetDatum(request.to_slots);
			if (ts_store_exec(ts_counter_has_bounds() ? &ts_stmt_grow : &ts_stmt_grow_1_4,
							  args, NULL, InvalidSnapshot, false) > 0)
			{
				/* (a statement of its own: it must see the rows the growth added) */
				if (ts_counter_has_bounds())
					ts_store_exec(&ts_stmt_share_out, args, NULL, InvalidSnapshot, false);
				ereport(DEBUG1,
						(errmsg("hot counter \"%s\" grew from %d to %d slots",
								name, request.from_slots, request.to_slots)));
			}
		}
	}
	ts_store_close(&session);
	PopActiveSnapshot();
	CommitTransactionCommand();
}
