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
 * caller's transaction.  Old keys cost nothing until rate_limit_sweep
 * deletes them.
 *
 * The statement reads the latest committed state, whatever
 * turnstile.isolation says: a rate limit counts what has happened.  In a
 * REPEATABLE READ or SERIALIZABLE transaction, an update of the key's row
 * committed after the transaction's snapshot makes the upsert fail with
 * 40001, as it does any UPDATE there.
 *
 *-------------------------------------------------------------------------
 */
#include "turnstile.h"

#include "catalog/pg_type.h"
#include "common/int.h"
#include "funcapi.h"
#include "utils/builtins.h"
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

/*
 * rate_limit(key, max, per, cost = 1)
 *	 -> (allowed, count, remaining, reset_at)
 */
PG_FUNCTION_INFO_V1(rate_limit);

Datum
rate_limit(PG_FUNCTION_ARGS)
{
	char	   *key;
	int64		max = ts_int64_arg(fcinfo, 1, "max");
	Interval   *per;
	int64		cost = ts_int64_arg(fcinfo, 3, "cost");
	int64		window_usec;
	TimestampTz window_start;
	TsStoreSession session;
	Snapshot	latest;
	TupleDesc	tupdesc;
	Datum		values[4];
	bool		nulls[4] = {false, false, false, false};
	bool		isnull;
	int64		count;

	ts_require_arg(PG_ARGISNULL(0), "key");
	key = ts_name_arg(PG_GETARG_DATUM(0), "rate limit key", NULL);
	ts_require_arg(PG_ARGISNULL(2), "per");
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
	ts_require_writable("rate limit \"%s\"", key);

	/* the window that holds now, counted from the Unix epoch */
	window_start = GetCurrentTimestamp() - TS_UNIX_EPOCH;
	window_start = TS_UNIX_EPOCH + (window_start - window_start % window_usec);

	ts_store_open(&session);
	latest = ts_latest_snapshot();
	ts_store_exec(&ts_stmt_take,
				  (Datum[]) {CStringGetTextDatum(key), TimestampTzGetDatum(window_start),
				  Int64GetDatum(cost), Int64GetDatum(max), IntervalPGetDatum(per)},
				  NULL, latest, false);
	count = DatumGetInt64(ts_store_value(0, 1, &isnull));
	values[0] = ts_store_value(0, 2, &isnull);
	window_start = DatumGetTimestampTz(ts_store_value(0, 3, &isnull));
	ts_policy_release(latest);
	ts_store_close(&session);

	values[1] = Int64GetDatum(count);
	values[2] = Int64GetDatum(count < max ? max - count : 0);
	values[3] = TimestampTzGetDatum(window_start + window_usec);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(BlessTupleDesc(tupdesc), values, nulls)));
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
