/*-------------------------------------------------------------------------
 *
 * counter_once.c
 *	  counter_incr_once: an increment that a retry cannot apply twice.
 *
 * A client whose COMMIT acknowledgement was lost (a dropped connection, a
 * pooler restart) does not know whether its increment happened.  With an
 * idempotency key it simply calls again: the first call with a key applies
 * the increment and records the key, with the increment's result, in the
 * same transaction; every later call with the key applies nothing and
 * returns that result.
 *
 * The key's row in turnstile.idempotency_key is the whole mechanism.  The
 * call that finds no row for its key, under the key's lock, applies the
 * increment and inserts the row with its result; a second call with the key
 * finds that row, still uncommitted, and waits for the transaction that
 * inserted it, as PostgreSQL's unique index makes a second INSERT wait.  If
 * that transaction commits, the second call reads the first one's result
 * (with a snapshot taken after the wait, which shows it); if it rolls back,
 * the row is gone with the increment, and the second call claims the key
 * itself.  Only the claiming call increments, so an increment is never
 * applied and then undone (see ts_once_claim_direct).  A table that someone
 * altered is written through SQL instead, with INSERT ... ON CONFLICT DO
 * NOTHING, whose wait for a concurrent insert of the key gives the same.
 *
 * Keys are kept for turnstile.idempotency_window after the call that
 * recorded them, and removed lazily: a backend's first call, and every
 * 128th after it, first deletes up to 256 expired ones, oldest first, so the
 * table holds about one window's keys without any background job.  A key
 * found expired is treated as new.  Removing keys is housekeeping: in a
 * REPEATABLE READ or SERIALIZABLE transaction it runs in a subtransaction,
 * so that a conflict with another caller's removal of the same keys does
 * not fail the call (ts_once_housekeep).
 *
 *-------------------------------------------------------------------------
 */
#include "relaccess.h"

#include "access/heapam.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/pg_type.h"
#include "miscadmin.h"
#include "storage/proc.h"
#if PG_VERSION_NUM >= 160000
#include "nodes/miscnodes.h"
#endif
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/guc.h"
#include "utils/resowner.h"
#include "utils/timestamp.h"

/*
 * How long a key is kept: turnstile.idempotency_window as set (an interval,
 * '24 hours' by default), and in microseconds.
 */
char	   *turnstile_idempotency_window = NULL;
int64		turnstile_idempotency_window_usec = INT64CONST(86400000000);

/*
 * Parse an interval without raising an error: a check hook must not.
 * PostgreSQL 16 has soft errors for that; before it, the parse error is
 * caught and thrown away, as nothing else has happened meanwhile.
 */
static bool
ts_parse_interval(const char *text, Datum *parsed)
{
#if PG_VERSION_NUM >= 160000
	ErrorSaveContext escontext = {T_ErrorSaveContext};

	/* with an ErrorSaveContext, a parse error is kept there, not raised */
	return DirectInputFunctionCallSafe(interval_in, (char *) text, INTERVALOID, -1,
									   (Node *) &escontext, parsed);
#else
	MemoryContext context = CurrentMemoryContext;
	volatile bool ok = true;

	PG_TRY();
	{
		*parsed = DirectFunctionCall3(interval_in, CStringGetDatum(text),
									  ObjectIdGetDatum(InvalidOid), Int32GetDatum(-1));
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(context);
		FlushErrorState();
		ok = false;
	}
	PG_END_TRY();
	return ok;
#endif
}

/*
 * The setting is an interval, as the SPEC writes it ('24 hours'), which an
 * integer setting with units could not take; it must be positive and
 * without months, whose length varies.
 */
bool
ts_idempotency_window_check(char **newval, void **extra, GucSource source)
{
	Datum		parsed;
	Interval   *window;
	int64	   *usec;

	if (!ts_parse_interval(*newval, &parsed))
	{
		GUC_check_errdetail("\"%s\" is not an interval.", *newval);
		return false;
	}
	window = DatumGetIntervalP(parsed);
	/* (3650 days in hours is 3650 days too, and days in microseconds can overflow) */
	if (window->month != 0 || window->day < 0 || window->time < 0 ||
		window->day > 3650 || window->time > 3650 * USECS_PER_DAY ||
		window->day * USECS_PER_DAY + window->time <= 0 ||
		window->day * USECS_PER_DAY + window->time > 3650 * USECS_PER_DAY)
	{
		GUC_check_errdetail("The idempotency window must be a positive interval of days, hours, minutes or seconds, at most 3650 days.");
		return false;
	}
#if PG_VERSION_NUM >= 160000
	usec = guc_malloc(LOG, sizeof(int64));
#else
	usec = malloc(sizeof(int64));
#endif
	if (usec == NULL)
		return false;
	*usec = window->day * USECS_PER_DAY + window->time;
	*extra = usec;
	return true;
}

void
ts_idempotency_window_assign(const char *newval, void *extra)
{
	turnstile_idempotency_window_usec = *(int64 *) extra;
}

/*
 * $1 key, $2 counter, $3 delta: the claim through SQL, for a table that
 * someone altered (see ts_once_claim_direct).  0 rows: the key was there.
 */
static TsStatement ts_stmt_claim = {
	"INSERT INTO turnstile.idempotency_key (key, counter, delta, used_at)"
	" VALUES ($1, $2, $3, pg_catalog.clock_timestamp())"
	" ON CONFLICT (key) DO NOTHING",
	3, {TEXTOID, TEXTOID, INT8OID}
};

/*
 * The statements that find a key by its primary key are planned anew on
 * every run: a plan made once while the table was empty, as a new
 * installation's is after autovacuum has looked at it, is a sequential scan
 * that a growing table then pays for on every call.
 */

/* $1 key, $2 the increment's result: the record after a claim through SQL */
static TsStatement ts_stmt_record = {
	"UPDATE turnstile.idempotency_key SET result = $2"
	" WHERE key OPERATOR(pg_catalog.=) $1",
	2, {TEXTOID, INT8OID}, NULL, true
};

/* $1 key, $2 the oldest use still in the window: the key's use, and whether expired */
static TsStatement ts_stmt_lookup = {
	"SELECT counter, delta, result, used_at OPERATOR(pg_catalog.<) $2"
	"  FROM turnstile.idempotency_key WHERE key OPERATOR(pg_catalog.=) $1",
	2, {TEXTOID, TIMESTAMPTZOID}, NULL, true
};

/* $1 key, $2 as above: an expired key goes, so that it can be claimed anew */
static TsStatement ts_stmt_forget = {
	"DELETE FROM turnstile.idempotency_key"
	" WHERE key OPERATOR(pg_catalog.=) $1 AND used_at OPERATOR(pg_catalog.<) $2",
	2, {TEXTOID, TIMESTAMPTZOID}, NULL, true
};

/*
 * $1 as above: the oldest expired keys that nobody is using go, up to
 * TS_ONCE_SWEEP_KEYS of them.  SKIP LOCKED: a key another caller is
 * deleting or claiming is left to it.  Planned anew on every run: planned
 * once while the table was small, it would read the whole table, sorted,
 * ever after, instead of the first keys of the index on used_at.
 */
#define TS_ONCE_SWEEP_EVERY		128	/* claims of a backend between two sweeps */
#define TS_ONCE_SWEEP_KEYS		256	/* twice the claims: the table shrinks */

static TsStatement ts_stmt_sweep = {
	"DELETE FROM turnstile.idempotency_key WHERE key IN ("
	"  SELECT key FROM turnstile.idempotency_key"
	"   WHERE used_at OPERATOR(pg_catalog.<) $1"
	"   ORDER BY used_at LIMIT " CppAsString2(TS_ONCE_SWEEP_KEYS) " FOR UPDATE SKIP LOCKED)",
	1, {TIMESTAMPTZOID}, NULL, true
};

/* Claims this backend made since its last sweep. */
static int	ts_once_claims_since_sweep = TS_ONCE_SWEEP_EVERY;

/* The columns of ts_stmt_lookup. */
enum
{
	TS_ONCE_COUNTER = 1,
	TS_ONCE_DELTA,
	TS_ONCE_RESULT,
	TS_ONCE_EXPIRED
};

/* One call of counter_incr_once. */
typedef struct TsOnceCall
{
	TsCounter	counter;
	int64		delta;
	const char *key;
	Datum		key_text;
	uint64		key_hash;		/* for the key's lock */
} TsOnceCall;

/* What a claim found. */
typedef enum TsClaim
{
	TS_CLAIM_APPLIED,			/* the key was unused: this call applied the increment */
	TS_CLAIM_USED,				/* a row is there: look it up */
	TS_CLAIM_THROUGH_SQL		/* the table was altered: claim through SQL */
} TsClaim;

/*
 * Does this call write the table directly?  Only if nobody gave it a
 * trigger, an index, a column of its own or anything else an INSERT would
 * have to honour.
 */
static bool
ts_once_insertable(Relation rel)
{
	TupleDesc	desc = RelationGetDescr(rel);

	if (!ts_relaccess_writable(rel, 2, (Oid[]) {ts_rels.idempotency_key_by_key,
		ts_rels.idempotency_key_by_used_at}))
		return false;
	for (int i = 0; i < desc->natts; i++)
	{
		AttrNumber	attnum = i + 1;

		if (!TupleDescAttr(desc, i)->attisdropped &&
			attnum != ts_rels.idem_key && attnum != ts_rels.idem_counter &&
			attnum != ts_rels.idem_delta && attnum != ts_rels.idem_result &&
			attnum != ts_rels.idem_used_at)
			return false;
	}
	return true;
}

/*
 * Claim the key and apply the increment, directly.
 *
 * What makes the claim exactly-once is the key's row, as in the claim
 * through SQL, and the order of three steps under the key's lock: look for
 * the row (with a dirty snapshot, which shows rows of transactions still in
 * progress), apply the increment, insert the row with its result.  The
 * lock keeps a second call with the key from looking between the first's
 * look and its insert; once the row is in, the lock goes back and the row
 * holds the key to the end of the transaction (keylock.c, "Keys held
 * through their rows"): a second call finds it and waits for the inserting
 * transaction, then finds the row committed (and reads its result) or gone
 * with a rollback (and claims the key itself).  The increment is applied
 * only by the call that found the key unused, so it is never applied and
 * then undone; and the row is written once, with its result, instead of
 * being inserted and then updated.
 */
static TsClaim
ts_once_claim_direct(TsOnceCall *call, Relation rel, int64 *result)
{
	for (;;)
	{
		SnapshotData dirty;
		ScanKeyData scankey;
		TupleTableSlot *slot = table_slot_create(rel, NULL);
		bool		found;
		TransactionId writer;

		ts_lock_idempotency_key(call->key_hash, call->key);
		InitDirtySnapshot(dirty);
		ScanKeyInit(&scankey, 1, BTEqualStrategyNumber, F_TEXTEQ, call->key_text);
		found = ts_relaccess_fetch(rel, ts_rels.idempotency_key_by_key, &scankey, 1,
								   &dirty, slot);
		ExecDropSingleTupleTableSlot(slot);
		if (!found)
		{
			Datum		values[TS_DIRECT_NATTS_MAX] = {0};
			bool		nulls[TS_DIRECT_NATTS_MAX];

			*result = ts_counter_add(&call->counter, call->delta);

			/* the increment may have processed invalidations: the numbers again */
			ts_relaccess_lookup();
			memset(nulls, true, sizeof(nulls));
			values[ts_rels.idem_key - 1] = call->key_text;
			values[ts_rels.idem_counter - 1] = CStringGetTextDatum(call->counter.name);
			values[ts_rels.idem_delta - 1] = Int64GetDatum(call->delta);
			values[ts_rels.idem_result - 1] = Int64GetDatum(*result);
			values[ts_rels.idem_used_at - 1] = TimestampTzGetDatum(GetCurrentTimestamp());
			nulls[ts_rels.idem_key - 1] = nulls[ts_rels.idem_counter - 1] =
				nulls[ts_rels.idem_delta - 1] = nulls[ts_rels.idem_result - 1] =
				nulls[ts_rels.idem_used_at - 1] = false;
			ts_relaccess_insert_row(rel, values, nulls);
			ts_unlock_idempotency_key(call->key_hash);
			return TS_CLAIM_APPLIED;
		}
		ts_unlock_idempotency_key(call->key_hash);

		/*
		 * A row of a transaction still in progress: inserted (the dirty
		 * snapshot's xmin) or being deleted by a sweep (its xmax).  Wait for
		 * that transaction, then look again.
		 */
		writer = TransactionIdIsValid(dirty.xmin) ? dirty.xmin : dirty.xmax;
		if (!TransactionIdIsValid(writer))
			return TS_CLAIM_USED;
		ts_idempotency_key_wait_writer(call->key_hash, writer, call->key);
	}
}

/*
 * Claim the key through SQL (INSERT ... ON CONFLICT DO NOTHING, which waits
 * for a transaction inserting the same key), and if claimed, apply the
 * increment and record its result.
 */
static TsClaim
ts_once_claim_sql(TsOnceCall *call, int64 *result)
{
	TsStoreSession session;
	Snapshot	latest;
	int			claimed;
	int			recorded;

	ts_store_open(&session);
	latest = ts_latest_snapshot();
	claimed = ts_store_exec(&ts_stmt_claim,
							(Datum[]) {call->key_text,
							CStringGetTextDatum(call->counter.name),
							Int64GetDatum(call->delta)},
							NULL, latest, false);
	ts_policy_release(latest);
	ts_store_close(&session);
	if (claimed == 0)
		return TS_CLAIM_USED;

	*result = ts_counter_add(&call->counter, call->delta);

	ts_store_open(&session);
	recorded = ts_store_exec(&ts_stmt_record,
							 (Datum[]) {call->key_text, Int64GetDatum(*result)},
							 NULL, InvalidSnapshot, false);
	/* a trigger or a row security policy can make the UPDATE skip the row */
	if (recorded != 1)
		ts_relaccess_altered("idempotency_key",
							 psprintf("The result of idempotency key \"%s\" could not be recorded: its UPDATE changed %d rows.",
									  call->key, recorded));
	ts_store_close(&session);
	return TS_CLAIM_APPLIED;
}

/*
 * Run a statement that deletes keys no longer the call's own (the sweep,
 * the forgetting of an expired key) with the latest snapshot.
 */
static void
ts_once_delete(TsStatement *stmt, Datum *args)
{
	TsStoreSession session;
	Snapshot	latest;

	ts_store_open(&session);
	latest = ts_latest_snapshot();
	ts_store_exec(stmt, args, NULL, latest, false);
	ts_policy_release(latest);
	ts_store_close(&session);
}

/*
 * The same, as housekeeping that another caller's doing the same work must
 * not fail: NULL if it ran to its end, else the serialization failure that
 * rolled it back.
 *
 * Both statements lock or delete rows found with the latest snapshot.  In
 * READ COMMITTED, a row that another caller deleted after that snapshot is
 * simply skipped; in REPEATABLE READ or SERIALIZABLE, locking or deleting
 * it raises 40001 (ExecLockRows, ExecDelete), though the row was nothing
 * the caller asked about and the other caller only did the same work.
 * There the statement runs in a subtransaction, and a serialization
 * failure rolls back only the statement; the caller decides what to do
 * with it (a 40001 that SSI raised to keep this transaction from becoming
 * a pivot comes back if the same row is deleted again, so the caller must
 * not simply retry).  Any other error is raised as it is.
 */
static ErrorData *
ts_once_housekeep(TsStatement *stmt, Datum *args)
{
	MemoryContext context = CurrentMemoryContext;
	ResourceOwner owner = CurrentResourceOwner;
	ErrorData  *conflict = NULL;

	if (!IsolationUsesXactSnapshot())
	{
		ts_once_delete(stmt, args);
		return NULL;
	}
	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(context);
	PG_TRY();
	{
		ts_once_delete(stmt, args);
		ReleaseCurrentSubTransaction();
	}
	PG_CATCH();
	{
		ErrorData  *error;

		MemoryContextSwitchTo(context);
		error = CopyErrorData();
		FlushErrorState();
		/* (this restores the caller's identity and ends the statement's SPI connection) */
		RollbackAndReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(context);
		CurrentResourceOwner = owner;
		if (error->sqlerrcode != ERRCODE_T_R_SERIALIZATION_FAILURE)
			ReThrowError(error);
		ereport(DEBUG1,
				(errmsg_internal("pg_turnstile: removing expired idempotency keys rolled back: %s",
								 error->message)));
		conflict = error;
	}
	PG_END_TRY();
	MemoryContextSwitchTo(context);
	CurrentResourceOwner = owner;
	return conflict;
}

/* This backend's transaction, as its virtual transaction id's local part. */
#if PG_VERSION_NUM >= 170000
#define TS_MY_LXID	(MyProc->vxid.lxid)
#else
#define TS_MY_LXID	(MyProc->lxid)
#endif

/* The transaction that swept last, in REPEATABLE READ or SERIALIZABLE. */
static LocalTransactionId ts_once_swept_in = InvalidLocalTransactionId;

/*
 * Every TS_ONCE_SWEEP_EVERY calls of a backend (and its first), delete the
 * oldest expired keys.  A REPEATABLE READ or SERIALIZABLE transaction
 * sweeps at most once, and leaves the rest to later transactions: each
 * sweep there is a subtransaction, and a transaction with more than 64 of
 * them that wrote makes every snapshot in the server costlier until it
 * ends (the subtransaction cache of its PGPROC overflows).
 */
static void
ts_once_sweep_if_due(Datum window)
{
	ErrorData  *conflict;

	if (++ts_once_claims_since_sweep < TS_ONCE_SWEEP_EVERY)
		return;
	if (IsolationUsesXactSnapshot())
	{
		if (ts_once_swept_in == TS_MY_LXID)
			return;
		ts_once_swept_in = TS_MY_LXID;
	}
	conflict = ts_once_housekeep(&ts_stmt_sweep, &window);
	/* another caller swept these keys: nothing is left to do */
	if (conflict != NULL)
		FreeErrorData(conflict);
	ts_once_claims_since_sweep = 0;
}

/* What the key's row says. */
typedef enum TsEarlier
{
	TS_EARLIER_RESULT,			/* an earlier call's result, in the window */
	TS_EARLIER_GONE,			/* no row: swept meanwhile by another caller */
	TS_EARLIER_EXPIRED			/* a row from before the window */
} TsEarlier;

/*
 * The key is in the table: its earlier call's result.  Otherwise the key
 * was swept meanwhile, or has expired and is to be forgotten, and the
 * caller claims it again.  The lookup takes the latest snapshot, which
 * shows what a transaction the claim waited for committed.
 */
static TsEarlier
ts_once_earlier_result(TsOnceCall *call, Datum window, int64 *result)
{
	TsStoreSession session;
	Snapshot	latest;
	bool		isnull;
	TsEarlier	earlier;

	ts_store_open(&session);
	latest = ts_latest_snapshot();
	if (ts_store_exec(&ts_stmt_lookup, (Datum[]) {call->key_text, window}, NULL,
					  latest, true) == 0)
		earlier = TS_EARLIER_GONE;
	else if (DatumGetBool(ts_store_value(0, TS_ONCE_EXPIRED, &isnull)))
		earlier = TS_EARLIER_EXPIRED;
	else
	{
		char	   *used_for = TextDatumGetCString(ts_store_value(0, TS_ONCE_COUNTER, &isnull));
		int64		used_delta = DatumGetInt64(ts_store_value(0, TS_ONCE_DELTA, &isnull));

		if (strcmp(used_for, call->counter.name) != 0 || used_delta != call->delta)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("idempotency key \"%s\" was used for a different increment",
							call->key),
					 errdetail("It was used to add " INT64_FORMAT " to counter \"%s\"; this call adds " INT64_FORMAT " to counter \"%s\".",
							   used_delta, used_for, call->delta, call->counter.name)));
		*result = DatumGetInt64(ts_store_value(0, TS_ONCE_RESULT, &isnull));
		/* the claim and the result are written in one transaction */
		if (isnull)
			ts_relaccess_altered("idempotency_key",
								 psprintf("The row of idempotency key \"%s\" has no result: something other than counter_incr_once wrote it.",
										  call->key));
		earlier = TS_EARLIER_RESULT;
	}
	ts_policy_release(latest);
	ts_store_close(&session);
	return earlier;
}

PG_FUNCTION_INFO_V1(counter_incr_once);

/*
 * counter_incr_once(name, delta, key) -> bigint
 */
Datum
counter_incr_once(PG_FUNCTION_ARGS)
{
	TsOnceCall	call;
	int64		result;
	TsEarlier	earlier;
	bool		went_round = false;
	ErrorData  *forget_conflict = NULL;

	ts_counter_from_arg(fcinfo, &call.counter);
	call.delta = ts_int64_arg(fcinfo, 1, "delta");
	ts_require_arg(PG_ARGISNULL(2), "key");
	call.key = ts_name_arg(PG_GETARG_DATUM(2), "idempotency key", NULL);
	call.key_text = CStringGetTextDatum(call.key);
	call.key_hash = ts_idempotency_key_hash(call.key);
	ts_require_writable("counter \"%s\"", call.counter.name);

	for (;;)
	{
		/* the oldest use still in the window */
		Datum		window = TimestampTzGetDatum(GetCurrentTimestamp() -
												 turnstile_idempotency_window_usec);
		Relation	rel;
		TsClaim		claim;

		ts_once_sweep_if_due(window);

		/* (the table is there: the function is of the same version) */
		ts_relaccess_lookup();
		claim = TS_CLAIM_THROUGH_SQL;
		if (OidIsValid(ts_rels.idempotency_key))
		{
			rel = ts_relaccess_open(&ts_rels.idempotency_key, RowExclusiveLock);
			if (ts_once_insertable(rel))
				claim = ts_once_claim_direct(&call, rel, &result);
			/* an inserted row keeps the table's lock, as in ts_counter_slot_add */
			table_close(rel, claim == TS_CLAIM_APPLIED ? NoLock : RowExclusiveLock);
		}
		if (claim == TS_CLAIM_THROUGH_SQL)
			claim = ts_once_claim_sql(&call, &result);

		if (claim == TS_CLAIM_APPLIED)
			PG_RETURN_INT64(result);
		earlier = ts_once_earlier_result(&call, window, &result);
		if (earlier == TS_EARLIER_RESULT)
			PG_RETURN_INT64(result);

		/*
		 * The key's row was swept since the claim saw it, or has expired
		 * and goes now: the next pass claims the key, or finds the row of
		 * a caller who claimed it meanwhile, which is in the window and
		 * stays.  So a second pass that ends here too made no progress: the
		 * forget was refused (SSI's 40001, raised again now), or the table
		 * keeps a row that the lookup cannot see or the forget cannot
		 * delete (a trigger, a row security policy).
		 */
		if (went_round)
		{
			if (forget_conflict != NULL)
				ReThrowError(forget_conflict);
			ts_relaccess_altered("idempotency_key",
								 psprintf("The row of idempotency key \"%s\" could not be %s.", call.key,
										  earlier == TS_EARLIER_EXPIRED ?
										  "deleted, though it has expired" : "read"));
		}
		went_round = true;
		if (earlier == TS_EARLIER_EXPIRED)
			forget_conflict = ts_once_housekeep(&ts_stmt_forget,
												(Datum[]) {call.key_text, window});
	}
}
