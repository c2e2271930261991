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
 * The key's row in turnstile.idempotency_key is the whole mechanism, and
 * PostgreSQL's unique index gives it the semantics the SPEC asks for: the
 * INSERT ... ON CONFLICT DO NOTHING of a second caller with the same key
 * waits for the transaction that inserted it.  If that transaction commits,
 * the second insert does nothing, and the second caller reads the first
 * one's result (with a snapshot taken after the wait, which shows it); if it
 * rolls back, the second insert goes in, and the second caller applies the
 * increment itself.  Only then does a caller increment, so an increment is
 * never applied and then undone.
 *
 * Keys are kept for turnstile.idempotency_window after the call that
 * recorded them, and removed lazily: a backend's first call, and every
 * 128th after it, first deletes up to 256 expired ones, oldest first, so the
 * table holds about one window's keys without any background job.  A key
 * found expired is treated as new.
 *
 *-------------------------------------------------------------------------
 */
#include "relaccess.h"

#include "access/heapam.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/pg_type.h"
#if PG_VERSION_NUM >= 160000
#include "nodes/miscnodes.h"
#endif
#include "utils/builtins.h"
#include "utils/guc.h"
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
	if (window->month != 0 || window->day < 0 || window->time < 0 ||
		(window->day == 0 && window->time == 0) ||
		window->day > 3650)
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
 * $1 key, $2 counter, $3 delta.  0 rows: the key was there already; else
 * where the claimed row is, for ts_stmt_record.
 */
static TsStatement ts_stmt_claim = {
	"INSERT INTO turnstile.idempotency_key (key, counter, delta, used_at)"
	" VALUES ($1, $2, $3, pg_catalog.clock_timestamp())"
	" ON CONFLICT (key) DO NOTHING RETURNING ctid",
	3, {TEXTOID, TEXTOID, INT8OID}
};

/*
 * The statements that find a key by its primary key are planned anew on
 * every run: a plan made once while the table was empty, as a new
 * installation's is after autovacuum has looked at it, is a sequential scan
 * that a growing table then pays for on every call.
 */

/*
 * $1 key, $2 the increment's result: for a table that someone gave a
 * trigger or another index (see ts_once_record).
 */
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

/*
 * Claim the key for this call, or find the result of the call that did.
 * True if claimed; else *result is the earlier call's result.  Runs inside
 * a store session; each statement takes the latest snapshot after the one
 * before it returned, so a claim that waited for another transaction is
 * followed by a read that shows what that transaction committed.
 */
static bool
ts_once_claim(const TsCounter *counter, int64 delta, const char *key, int64 *result,
			  ItemPointer claimed_row)
{
	Datum		window;
	Datum		args[3] = {CStringGetTextDatum(key), CStringGetTextDatum(counter->name),
	Int64GetDatum(delta)};

	for (;;)
	{
		Snapshot	latest = ts_latest_snapshot();
		int			claimed;
		bool		isnull;
		char	   *used_for;
		int64		used_delta;

		/* the oldest use still in the window */
		window = TimestampTzGetDatum(GetCurrentTimestamp() - turnstile_idempotency_window_usec);
		if (++ts_once_claims_since_sweep >= TS_ONCE_SWEEP_EVERY)
		{
			ts_store_exec(&ts_stmt_sweep, &window, NULL, latest, false);
			ts_once_claims_since_sweep = 0;
		}
		claimed = ts_store_exec(&ts_stmt_claim, args, NULL, latest, false);
		ts_policy_release(latest);
		if (claimed == 1)
		{
			*claimed_row = *(ItemPointer) DatumGetPointer(ts_store_value(0, 1, &isnull));
			return true;
		}

		latest = ts_latest_snapshot();
		if (ts_store_exec(&ts_stmt_lookup, (Datum[]) {args[0], window}, NULL, latest, true) == 0)
		{
			/* swept meanwhile by another caller: claim it again */
			ts_policy_release(latest);
			continue;
		}
		if (DatumGetBool(ts_store_value(0, TS_ONCE_EXPIRED, &isnull)))
		{
			ts_store_exec(&ts_stmt_forget, (Datum[]) {args[0], window}, NULL, latest, false);
			ts_policy_release(latest);
			continue;
		}
		used_for = TextDatumGetCString(ts_store_value(0, TS_ONCE_COUNTER, &isnull));
		used_delta = DatumGetInt64(ts_store_value(0, TS_ONCE_DELTA, &isnull));
		if (strcmp(used_for, counter->name) != 0 || used_delta != delta)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("idempotency key \"%s\" was used for a different increment", key),
					 errdetail("It was used to add " INT64_FORMAT " to counter \"%s\"; this call adds " INT64_FORMAT " to counter \"%s\".",
							   used_delta, used_for, delta, counter->name)));
		*result = DatumGetInt64(ts_store_value(0, TS_ONCE_RESULT, &isnull));
		ts_policy_release(latest);
		/* the claim and the result are written in one transaction */
		if (isnull)
			elog(ERROR, "idempotency key \"%s\" has no result", key);
		return false;
	}
}

/*
 * Record the increment's result in the row this call claimed, found by its
 * place: nothing moves the row between the claim and the record, as it is
 * new and no other transaction can see it yet.  Written directly (one
 * planned UPDATE would cost as much as the increment), unless the table
 * was altered; then through SQL, by key.
 */
static void
ts_once_record(const char *key, ItemPointer claimed_row, int64 result)
{
	Relation	rel;
	TupleTableSlot *slot;
	Snapshot	latest;
	bool		should_free;
	HeapTuple	tuple;
	Datum		values[TS_DIRECT_NATTS_MAX] = {0};
	bool		replace[TS_DIRECT_NATTS_MAX] = {false};

	/* (the table is there: the claim inserted into it) */
	ts_relaccess_lookup();
	rel = OidIsValid(ts_rels.idempotency_key) ?
		ts_relaccess_open(&ts_rels.idempotency_key, RowExclusiveLock) : NULL;
	if (rel == NULL ||
		!ts_relaccess_writable(rel, 2, (Oid[]) {ts_rels.idempotency_key_by_key,
			ts_rels.idempotency_key_by_used_at}))
	{
		TsStoreSession session;

		if (rel != NULL)
			table_close(rel, RowExclusiveLock);
		ts_store_open(&session);
		ts_store_exec(&ts_stmt_record,
					  (Datum[]) {CStringGetTextDatum(key), Int64GetDatum(result)},
					  NULL, InvalidSnapshot, false);
		ts_store_close(&session);
		return;
	}

	/* the claim was an earlier command of this transaction: a new snapshot shows it */
	slot = table_slot_create(rel, NULL);
	latest = ts_latest_snapshot();
	if (!ts_relaccess_fetch_at(rel, claimed_row, latest, slot))
		elog(ERROR, "the claimed row of idempotency key \"%s\" is gone", key);
	tuple = ExecFetchSlotHeapTuple(slot, true, &should_free);
	values[ts_rels.idem_result - 1] = Int64GetDatum(result);
	replace[ts_rels.idem_result - 1] = true;
	ts_relaccess_update_row(rel, tuple, values, replace);
	if (should_free)
		heap_freetuple(tuple);
	ts_policy_release(latest);
	ExecDropSingleTupleTableSlot(slot);
	table_close(rel, RowExclusiveLock);
}

PG_FUNCTION_INFO_V1(counter_incr_once);

/*
 * counter_incr_once(name, delta, key) -> bigint
 */
Datum
counter_incr_once(PG_FUNCTION_ARGS)
{
	TsCounter	counter;
	int64		delta;
	char	   *key;
	int64		result;
	bool		claimed;
	ItemPointerData claimed_row;
	TsStoreSession session;

	ts_counter_from_arg(fcinfo, &counter);
	delta = ts_int64_arg(fcinfo, 1, "delta");
	ts_require_arg(PG_ARGISNULL(2), "key");
	key = ts_name_arg(PG_GETARG_DATUM(2), "idempotency key", NULL);
	ts_require_writable("counter \"%s\"", counter.name);

	ts_store_open(&session);
	claimed = ts_once_claim(&counter, delta, key, &result, &claimed_row);
	ts_store_close(&session);
	if (!claimed)
		PG_RETURN_INT64(result);

	result = ts_counter_add(&counter, delta);

	ts_once_record(key, &claimed_row, result);
	PG_RETURN_INT64(result);
}
