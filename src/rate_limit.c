/*-------------------------------------------------------------------------
 *
 * rate_limit.c
 *	  rate_limit and rate_limit_sweep: fixed-window rate limits, exact under
 *	  any concurrency.
 *
 * A key's window is [window_start, window_start + per), the window of
 * length per that holds the call's time, counting windows from the Unix
 * epoch.  Each key has one row in turnstile.rate_limit with the window it
 * last counted in and its count.  A call runs one INSERT ... ON CONFLICT DO
 * UPDATE on that row, which decides in the row's update itself, under its
 * row lock: if the stored window is the call's (or a later one, written by
 * a caller whose clock was ahead), the cost is added when the count stays
 * within max; if it is an earlier one, the row is reset in place to the
 * call's window.  So callers of one key take turns on one row lock exactly
 * as a hand-written table's callers do, no more: N callers in one window
 * get exactly min(N, max / cost) allowed, and a window boundary is only a
 * reset that one of them makes.  The count commits or rolls back with the
 * caller's transaction; a transaction that wrote nothing else commits
 * without waiting for its WAL flush (async_commit.c).  Old keys cost
 * nothing until rate_limit_sweep deletes them.
 *
 * A key that has its row already, as almost every call finds, is decided
 * without SPI (ts_rate_take_direct): the row is found through the primary
 * key and rewritten as an UPDATE would rewrite it, waiting for an updater
 * still in progress; if that one changed it, the row is locked as the
 * upsert would lock it, following its updates to the latest version, and
 * decided again.  The decision is the same as the statement's, made on
 * the same locked row.  A new key, one swept away meanwhile, or a table
 * that someone gave a trigger or an index goes through the statement.
 *
 * Both read the latest committed state, whatever turnstile.isolation says:
 * a rate limit counts what has happened.  In a REPEATABLE READ or
 * SERIALIZABLE transaction the direct path, like a row lock taken with
 * SELECT ... FOR UPDATE in READ COMMITTED, counts on the key's latest row;
 * only the statement, for a key's first row, can fail there with 40001.
 *
 *-------------------------------------------------------------------------
 */
#include "relaccess.h"

#include "access/heapam.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/pg_type.h"
#include "common/int.h"
#include "funcapi.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/timestamp.h"

/*
 * $1 key, $2 the call's window start, $3 cost, $4 max, $5 per.  Returns the
 * count, whether the cost was counted, and the window counted in.  "same":
 * the stored window is the call's, or a later one; its count is kept, else
 * it starts again at 0.  The comparison count <= max - cost cannot
 * overflow, as 0 <= cost <= max when it is made.
 */
#define TS_RATE_SAME	"r.window_start OPERATOR(pg_catalog.>=) $2"
#define TS_RATE_BASE	"(CASE WHEN " TS_RATE_SAME " THEN r.count ELSE 0 END)"
#define TS_RATE_FITS	"($3 OPERATOR(pg_catalog.<=) $4 AND " TS_RATE_BASE \
						" OPERATOR(pg_catalog.<=) ($4 OPERATOR(pg_catalog.-) $3))"

static TsStatement ts_stmt_take = {
	"INSERT INTO turnstile.rate_limit AS r"
	"       (key, window_start, count, max, per, allowed, used_at)"
	" VALUES ($1, $2, CASE WHEN $3 OPERATOR(pg_catalog.<=) $4 THEN $3 ELSE 0 END,"
	"         $4, $5, $3 OPERATOR(pg_catalog.<=) $4, pg_catalog.clock_timestamp())"
	" ON CONFLICT (key) DO UPDATE SET"
	"   window_start = CASE WHEN " TS_RATE_SAME " THEN r.window_start ELSE $2 END,"
	"   count = CASE WHEN " TS_RATE_FITS " THEN " TS_RATE_BASE " OPERATOR(pg_catalog.+) $3"
	"           ELSE " TS_RATE_BASE " END,"
	"   allowed = " TS_RATE_FITS ","
	"   max = $4, per = $5, used_at = pg_catalog.clock_timestamp()"
	" RETURNING count, allowed, window_start",
	5, {TEXTOID, TIMESTAMPTZOID, INT8OID, INT8OID, INTERVALOID}
};

/* $1 older_than */
static TsStatement ts_stmt_sweep = {
	"DELETE FROM turnstile.rate_limit"
	" WHERE used_at OPERATOR(pg_catalog.<) (pg_catalog.clock_timestamp() OPERATOR(pg_catalog.-) $1)",
	1, {INTERVALOID}
};

/*
 * Every key's row, for the view turnstile.rate_limits, in the columns of
 * turnstile.rate_limit_state.
 */
static TsStatement ts_stmt_list = {
	"SELECT key, window_start, count, max, per, used_at FROM turnstile.rate_limit",
	0, {InvalidOid}
};

/* The Unix epoch, as a timestamptz. */
#define TS_UNIX_EPOCH	(-((TimestampTz) (POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE) * USECS_PER_DAY))

/*
 * A window length in microseconds: a positive interval of days, hours,
 * minutes and seconds (a day counts 24 hours); months are refused, their
 * length varies.
 */
static int64
ts_window_usec(const Interval *per)
{
	int64		usec;

	if (per->month != 0 || per->day < 0 || per->time < 0 ||
		pg_mul_s64_overflow(per->day, USECS_PER_DAY, &usec) ||
		pg_add_s64_overflow(usec, per->time, &usec) || usec <= 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("per must be a positive interval of days, hours, minutes or seconds"),
				 errdetail("Windows are counted from the Unix epoch in fixed lengths; a month has none.")));
	return usec;
}

/* What a call asks of its key's row, and what it got. */
typedef struct TsRateTake
{
	const char *key;
	TimestampTz window_start;	/* the call's window */
	int64		cost;
	int64		max;
	Interval   *per;
	TimestampTz counted_in;		/* after: the window counted in */
	int64		count;			/* after: the window's count */
	bool		allowed;		/* after: whether cost was counted */
} TsRateTake;

/*
 * Decide on a version of the key's row: the values that ts_stmt_take would
 * write over it (arrays of TS_DIRECT_NATTS_MAX), and take's result.
 */
static void
ts_rate_decide(TsRateTake *take, TupleTableSlot *slot, Datum *values, bool *replace)
{
	TimestampTz stored_window = DatumGetTimestampTz(slot->tts_values[ts_rels.rl_window_start - 1]);
	int64		base;

	/* as ts_stmt_take: a later stored window is kept, an earlier one starts again */
	if (stored_window >= take->window_start)
	{
		take->counted_in = stored_window;
		base = DatumGetInt64(slot->tts_values[ts_rels.rl_count - 1]);
	}
	else
	{
		take->counted_in = take->window_start;
		base = 0;
	}
	take->allowed = take->cost <= take->max && base <= take->max - take->cost;
	take->count = take->allowed ? base + take->cost : base;

	values[ts_rels.rl_window_start - 1] = TimestampTzGetDatum(take->counted_in);
	values[ts_rels.rl_count - 1] = Int64GetDatum(take->count);
	values[ts_rels.rl_max - 1] = Int64GetDatum(take->max);
	values[ts_rels.rl_per - 1] = IntervalPGetDatum(take->per);
	values[ts_rels.rl_allowed - 1] = BoolGetDatum(take->allowed);
	values[ts_rels.rl_used_at - 1] = TimestampTzGetDatum(GetCurrentTimestamp());
	replace[ts_rels.rl_window_start - 1] = replace[ts_rels.rl_count - 1] = true;
	replace[ts_rels.rl_max - 1] = replace[ts_rels.rl_per - 1] = true;
	replace[ts_rels.rl_allowed - 1] = replace[ts_rels.rl_used_at - 1] = true;
}

/*
 * Decide on the key's existing row directly, as ts_stmt_take would: false,
 * having written nothing, if the key has no row, its row was deleted
 * meanwhile, or the table is not as the extension made it.
 */
static bool
ts_rate_take_direct(TsRateTake *take)
{
	Relation	rel;
	TupleTableSlot *slot;
	Snapshot	latest;
	ScanKeyData key;
	TM_FailureData failure;
	Datum		values[TS_DIRECT_NATTS_MAX];
	bool		replace[TS_DIRECT_NATTS_MAX] = {false};
	bool		should_free;
	HeapTuple	tuple;
	bool		done = false;

	ts_relaccess_lookup();
	if (!OidIsValid(ts_rels.rate_limit))
	{
		ts_async_commit_forget();
		return false;
	}
	rel = ts_relaccess_open(&ts_rels.rate_limit, RowExclusiveLock);
	if (!ts_relaccess_writable(rel, 1, &ts_rels.rate_limit_by_key))
	{
		/* the statement may run the caller's trigger or rule: see async_commit.c */
		ts_async_commit_forget();
		table_close(rel, RowExclusiveLock);
		return false;
	}
	slot = table_slot_create(rel, NULL);
	latest = ts_latest_snapshot();
	/* (the key is the primary key's first and only column) */
	ScanKeyInit(&key, 1, BTEqualStrategyNumber, F_TEXTEQ, CStringGetTextDatum(take->key));

	if (ts_relaccess_fetch_to_update(rel, ts_rels.rate_limit_by_key, &key, 1, latest, slot))
	{
		/*
		 * Decide on the latest committed version and write over it, as an
		 * UPDATE would: the update waits for a caller still writing the
		 * row, and succeeds only if that version is still the latest, so
		 * the decision was made on the count that it replaces.
		 */
		ts_rate_decide(take, slot, values, replace);
		tuple = ExecFetchSlotHeapTuple(slot, true, &should_free);
		done = ts_relaccess_try_update_row(rel, tuple, values, replace) == TM_Ok;
		if (should_free)
			heap_freetuple(tuple);

		/*
		 * Another caller counted since (or the row is gone): lock the row
		 * as ON CONFLICT DO UPDATE would, but also following its updates
		 * (FIND_LAST_VERSION), so that the lock is on the latest version,
		 * whose count is the one to decide on.  Once it is held, nobody
		 * else writes the row until this transaction ends.
		 */
		if (!done &&
			table_tuple_lock(rel, &slot->tts_tid, latest, slot, GetCurrentCommandId(true),
							 LockTupleNoKeyExclusive, LockWaitBlock,
							 TUPLE_LOCK_FLAG_FIND_LAST_VERSION, &failure) == TM_Ok)
		{
			slot_getallattrs(slot);
			ts_rate_decide(take, slot, values, replace);
			tuple = ExecFetchSlotHeapTuple(slot, true, &should_free);
			/* the row's lock, held to the end of the transaction, makes this its only writer */
			ts_relaccess_update_row(rel, tuple, values, replace);
			if (should_free)
				heap_freetuple(tuple);
			done = true;
		}
	}
	ts_policy_release(latest);
	ExecDropSingleTupleTableSlot(slot);
	/* a written row keeps the table's lock, as in ts_counter_slot_add */
	table_close(rel, done ? NoLock : RowExclusiveLock);
	return done;
}

/*
 * Decide through SQL: for a key's first row, and whatever the direct path
 * leaves.
 */
static void
ts_rate_take_sql(TsRateTake *take)
{
	TsStoreSession session;
	Snapshot	latest;
	bool		isnull;
	int			rows;

	ts_store_open(&session);
	latest = ts_latest_snapshot();
	rows = ts_store_exec(&ts_stmt_take,
						 (Datum[]) {CStringGetTextDatum(take->key),
						 TimestampTzGetDatum(take->window_start), Int64GetDatum(take->cost),
						 Int64GetDatum(take->max), IntervalPGetDatum(take->per)},
						 NULL, latest, false);
	/* a trigger or a row security policy can make the upsert skip the row */
	if (rows != 1)
		ts_relaccess_altered("rate_limit",
							 psprintf("The count of rate limit \"%s\" could not be written: its upsert returned %d rows.",
									  take->key, rows));
	take->count = DatumGetInt64(ts_store_value(0, 1, &isnull));
	take->allowed = DatumGetBool(ts_store_value(0, 2, &isnull));
	take->counted_in = DatumGetTimestampTz(ts_store_value(0, 3, &isnull));
	ts_policy_release(latest);
	ts_store_close(&session);
}

/* The columns of turnstile.rate_limit_result, and of 1.4's OUT parameters. */
static const Oid ts_rate_limit_result_types[] = {BOOLOID, INT8OID, INT8OID, TIMESTAMPTZOID};

/*
 * rate_limit(key, max, per, cost) and rate_limit(key, max, per) ->
 *	 turnstile.rate_limit_result (allowed, count, remaining, reset_at)
 *
 * The form without cost (1.5) is a function of its own, with a C name of its
 * own, rather than a DEFAULT, which would cost every calling statement its
 * expansion at plan time; a session that still has the 1.4 library, which
 * knows only rate_limit, then gets "could not find function" for it instead
 * of reading a fourth argument that is not there.  Before 1.5, one function
 * with a DEFAULT and OUT parameters.
 */
static Datum ts_rate_limit(FunctionCallInfo fcinfo, int64 cost);

PG_FUNCTION_INFO_V1(rate_limit);
PG_FUNCTION_INFO_V1(rate_limit_cost_1);

Datum
rate_limit(PG_FUNCTION_ARGS)
{
	return ts_rate_limit(fcinfo, ts_int64_arg(fcinfo, 3, "cost"));
}

Datum
rate_limit_cost_1(PG_FUNCTION_ARGS)
{
	return ts_rate_limit(fcinfo, 1);
}

static Datum
ts_rate_limit(FunctionCallInfo fcinfo, int64 cost)
{
	char	   *key;
	int64		max = ts_int64_arg(fcinfo, 1, "max");
	Interval   *per;
	int64		window_usec;
	TimestampTz window_start;
	TimestampTz reset_at;
	TsRateTake	take;
	TupleDesc	tupdesc;
	Datum		values[4];
	bool		nulls[4] = {false, false, false, false};

	/* every NULL is refused (22004) before any value is (22023) */
	ts_require_arg(PG_ARGISNULL(0), "key");
	ts_require_arg(PG_ARGISNULL(2), "per");
	key = ts_name_arg(PG_GETARG_DATUM(0), "rate limit key", NULL);
	per = PG_GETARG_INTERVAL_P(2);
	if (max < 0 || cost < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s must not be negative", max < 0 ? "max" : "cost"),
				 errdetail("Rate limit \"%s\" was given max " INT64_FORMAT " and cost " INT64_FORMAT ".",
						   key, max, cost)));
	window_usec = ts_window_usec(per);
	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "rate_limit must return a record");
	ts_check_row_desc(fcinfo, tupdesc, lengthof(ts_rate_limit_result_types),
					  ts_rate_limit_result_types);
	ts_require_writable("rate limit \"%s\"", key);

	/* the window that holds now, counted from the Unix epoch */
	window_start = GetCurrentTimestamp() - TS_UNIX_EPOCH;
	window_start = TS_UNIX_EPOCH + (window_start - window_start % window_usec);

	take = (TsRateTake) {key, window_start, cost, max, per};
	ts_async_commit_before_count();
	if (!ts_rate_take_direct(&take))
		ts_rate_take_sql(&take);
	ts_async_commit_after_count();

	/*
	 * A window's end can lie past the last timestamp: per allows about
	 * 292,000 years, and the window kept can be a later one that another
	 * call's per started.  The error rolls back what the call counted.
	 */
	if (pg_add_s64_overflow(take.counted_in, window_usec, &reset_at) ||
		!IS_VALID_TIMESTAMP(reset_at))
		ereport(ERROR,
				(errcode(ERRCODE_DATETIME_VALUE_OUT_OF_RANGE),
				 errmsg("rate limit \"%s\" would reset after the last timestamp", key),
				 errdetail("Its window starts at %s and is %s long.",
						   timestamptz_to_str(take.counted_in),
						   DatumGetCString(DirectFunctionCall1(interval_out,
															   IntervalPGetDatum(per))))));

	values[0] = BoolGetDatum(take.allowed);
	values[1] = Int64GetDatum(take.count);
	values[2] = Int64GetDatum(take.count < max ? max - take.count : 0);
	values[3] = TimestampTzGetDatum(reset_at);
	PG_RETURN_DATUM(ts_form_row(BlessTupleDesc(tupdesc), values, nulls));
}

/*
 * rate_limit_sweep(older_than) -> bigint: the keys deleted
 */
PG_FUNCTION_INFO_V1(rate_limit_sweep);

Datum
rate_limit_sweep(PG_FUNCTION_ARGS)
{
	Interval   *older_than;
	TsStoreSession session;
	Snapshot	latest;
	int			rows;

	ts_require_arg(PG_ARGISNULL(0), "older_than");
	older_than = PG_GETARG_INTERVAL_P(0);
	if (older_than->month < 0 || older_than->day < 0 || older_than->time < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("older_than must not be negative")));
	ts_require_writable("rate limits");

	ts_store_open(&session);
	latest = ts_latest_snapshot();
	rows = ts_store_exec(&ts_stmt_sweep, (Datum[]) {IntervalPGetDatum(older_than)},
						 NULL, latest, false);
	ts_policy_release(latest);
	ts_store_close(&session);
	PG_RETURN_INT64(rows);
}

/*
 * rate_limit_list() -> setof rate_limit_state: every key's row, for the view
 * turnstile.rate_limits.  It reads with the latest snapshot, as rate_limit
 * does, whatever turnstile.isolation says.  With the transaction's own
 * snapshot a REPEATABLE READ transaction that had called rate_limit on a
 * key counted by another caller since that snapshot would see the version
 * its snapshot shows, from before that call, and, scanning the whole table,
 * also the one it wrote over the latest (the SPEC's pitfall, under
 * Isolation).
 */
PG_FUNCTION_INFO_V1(rate_limit_list);

Datum
rate_limit_list(PG_FUNCTION_ARGS)
{
	TsStoreSession session;
	Snapshot	latest;

	InitMaterializedSRF(fcinfo, 0);
	ts_store_open(&session);
	latest = ts_latest_snapshot();
	ts_store_materialize(fcinfo, &ts_stmt_list, latest);
	ts_policy_release(latest);
	ts_store_close(&session);
	return (Datum) 0;
}
