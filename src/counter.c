/*-------------------------------------------------------------------------
 *
 * counter.c
 *	  Exact counters: the SQL-callable counter_* functions.
 *
 * A counter is one row per slot in turnstile.counter_slot.  Every call
 * follows the same order:
 *
 *	1. lock the counter's key (keylock.c): ExclusiveLock for anything that
 *	   needs the one exact value, ShareLock plus one slot's lock for an
 *	   increment of a hot counter;
 *	2. take the snapshot the isolation policy names (snapshot.c) and, under
 *	   "repeatable read", make sure the key did not change after the caller's
 *	   snapshot;
 *	3. read or write the rows with that snapshot.
 *
 * Locking before reading is what makes the calls exact: a caller that had to
 * wait reads the state its predecessor committed, never the state it saw
 * before waiting.
 *
 * Hot counters.  An increment must choose its locks before it can read the
 * counter, so it guesses the slot count and checks the guess against the row
 * it updates:
 *
 *	- for the few hot counters this backend incremented lately, it remembers
 *	  the count (counter_slot.c, with where their rows are);
 *	- otherwise it guesses plain: if the counter's lock is free it takes it
 *	  exclusively and updates slot 0 straight away, as most counters are
 *	  plain; if the lock is busy it first reads the counter's slot 0 row
 *	  without a lock (one index probe, counter_slot.c).
 *
 * The guess may be wrong or stale: the counter may be dropped and created
 * again with another slot count between the read and the lock.  The fast
 * path then writes nothing (no row for its slot, or a hot counter where a
 * plain one was expected, or the reverse), and the increment gives back the
 * locks it took for the guess and chooses again, or takes the exclusive
 * path.  Giving them back matters: a hot counter's increments would queue
 * behind an unneeded ExclusiveLock, and two backends that both upgraded from
 * ShareLock to ExclusiveLock would deadlock.
 *
 *-------------------------------------------------------------------------
 */
#include "turnstile.h"

#include "access/htup_details.h"
#include "access/xact.h"
#include "catalog/pg_type.h"
#include "common/int.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"

PG_FUNCTION_INFO_V1(counter_create);
PG_FUNCTION_INFO_V1(counter_incr);
PG_FUNCTION_INFO_V1(counter_incr_expected);
PG_FUNCTION_INFO_V1(counter_decr);
PG_FUNCTION_INFO_V1(counter_cas);
PG_FUNCTION_INFO_V1(counter_get);
PG_FUNCTION_INFO_V1(counter_set);
PG_FUNCTION_INFO_V1(counter_info);
PG_FUNCTION_INFO_V1(counter_drop);
PG_FUNCTION_INFO_V1(counter_list);
PG_FUNCTION_INFO_V1(counter_lock_key);
PG_FUNCTION_INFO_V1(counter_bounds);
PG_FUNCTION_INFO_V1(counter_try_incr);

/* The state of one counter, summed over its slots. */
typedef struct TsCounterState
{
	bool		exists;
	bool		overflowed;		/* a hot counter's slots sum past bigint */
	int64		value;
	int64		version;
	int32		slots;
	TimestampTz created_at;
	TimestampTz updated_at;
	bool		has_lower;		/* the bounds, kept in every slot row */
	bool		has_upper;
	int64		lower;			/* PG_INT64_MIN without a lower bound */
	int64		upper;			/* PG_INT64_MAX without an upper bound */
} TsCounterState;

/*
 * What an increment does when it would take the counter out of its bounds
 * (or a side without a bound out of the bigint range).
 */
typedef enum TsOutOfBounds
{
	TS_BOUNDS_RAISE,			/* raise 23514 (22003 past bigint) */
	TS_BOUNDS_SKIP,				/* add nothing */
	TS_BOUNDS_CLAMP				/* add what fits */
} TsOutOfBounds;

/*
 * Statements.  $1 is always the counter name.
 */
#define TS_SQL_READ(bounds) \
	"SELECT slots, value, version, created_at, updated_at, " bounds \
	"  FROM turnstile.counter_slot" \
	" WHERE name OPERATOR(pg_catalog.=) $1"

static TsStatement ts_stmt_read = {
	TS_SQL_READ("lower, upper"), 1, {TEXTOID}
};

/*
 * The statements that differ from 1.5 on have a second form, used until
 * ALTER EXTENSION UPDATE to 1.5, when counters have no bounds (see
 * ts_counter_stmt).
 */
static TsStatement ts_stmt_read_1_4 = {
	TS_SQL_READ("NULL::pg_catalog.int8, NULL::pg_catalog.int8"), 1, {TEXTOID}
};

/*
 * Add $3 to slot $2, unless the slot value would leave [$4, $5] (overflow)
 * or the slot's share of the bounds, or the counter is not of the kind the
 * caller locked for ($6: hot).  It says how many slots the counter has, for
 * the caller to add the others.  The CASE adds only once the value is known
 * not to overflow: the order of AND's arms is the planner's.
 */
#define TS_SQL_ADD(fits) \
	"UPDATE turnstile.counter_slot" \
	"   SET value = value OPERATOR(pg_catalog.+) $3," \
	"       version = version OPERATOR(pg_catalog.+) 1," \
	"       updated_at = pg_catalog.clock_timestamp()" \
	" WHERE name OPERATOR(pg_catalog.=) $1 AND slot OPERATOR(pg_catalog.=) $2" \
	"   AND " fits \
	"   AND (slots OPERATOR(pg_catalog.>) 1) OPERATOR(pg_catalog.=) $6" \
	" RETURNING value, slots"
#define TS_SQL_NO_OVERFLOW \
	"value OPERATOR(pg_catalog.>=) $4 AND value OPERATOR(pg_catalog.<=) $5"

static TsStatement ts_stmt_add = {
	TS_SQL_ADD("CASE WHEN " TS_SQL_NO_OVERFLOW
			   "     THEN (slot_lower IS NULL OR"
			   "           (value OPERATOR(pg_catalog.+) $3) OPERATOR(pg_catalog.>=) slot_lower)"
			   "      AND (slot_upper IS NULL OR"
			   "           (value OPERATOR(pg_catalog.+) $3) OPERATOR(pg_catalog.<=) slot_upper)"
			   "     ELSE false END"),
	6, {TEXTOID, INT4OID, INT8OID, INT8OID, INT8OID, BOOLOID}
};

static TsStatement ts_stmt_add_1_4 = {
	TS_SQL_ADD(TS_SQL_NO_OVERFLOW), 6, {TEXTOID, INT4OID, INT8OID, INT8OID, INT8OID, BOOLOID}
};

/*
 * Create a counter with value $2 in slot 0 and $3 slots, bounds $4 and $5,
 * and the slots' shares of them (see TsShares): slot 0's [$6, $8], the
 * others' [$7, $9].
 */
#define TS_SQL_INSERT(columns, values) \
	"INSERT INTO turnstile.counter_slot" \
	"       (name, slot, slots, value, version, created_at, updated_at" columns ")" \
	" SELECT $1, s, $3," \
	"        CASE WHEN s OPERATOR(pg_catalog.=) 0 THEN $2 ELSE 0 END," \
	"        CASE WHEN s OPERATOR(pg_catalog.=) 0 THEN 1 ELSE 0 END, t.now, t.now" values \
	"   FROM pg_catalog.generate_series(0, $3 OPERATOR(pg_catalog.-) 1) s," \
	"        (SELECT pg_catalog.clock_timestamp() AS now) t"

static TsStatement ts_stmt_insert = {
	TS_SQL_INSERT(", lower, upper, slot_lower, slot_upper",
				  ", $4, $5,"
				  "  CASE WHEN s OPERATOR(pg_catalog.=) 0 THEN $6 ELSE $7 END,"
				  "  CASE WHEN s OPERATOR(pg_catalog.=) 0 THEN $8 ELSE $9 END"),
	9, {TEXTOID, INT8OID, INT4OID, INT8OID, INT8OID, INT8OID, INT8OID, INT8OID, INT8OID}
};

static TsStatement ts_stmt_insert_1_4 = {
	TS_SQL_INSERT("", ""), 3, {TEXTOID, INT8OID, INT4OID}
};

/*
 * Set a counter to $2 and its bounds to $3 and $4, and deal the room out
 * again (see TsShares): slot 0 takes the value and the share [$5, $7], the
 * other slots go to zero with the share [$6, $8].
 * Every slot row is written, zero or not: the written rows hold the counter
 * until this transaction ends (keylock.c), and a hot increment must not slip
 * into a slot this set left alone, or the increment would return a total
 * from before the set and the set's value would not be the counter's.  Only
 * the rows whose value changes bump their version, so the counter's version
 * (the sum of its slot versions) grows by the rows that changed.
 */
#define TS_SQL_SET(bounds) \
	"UPDATE turnstile.counter_slot" \
	"   SET value = CASE WHEN slot OPERATOR(pg_catalog.=) 0 THEN $2 ELSE 0 END," \
	"       version = version OPERATOR(pg_catalog.+)" \
	"                 CASE WHEN slot OPERATOR(pg_catalog.=) 0" \
	"                        OR value OPERATOR(pg_catalog.<>) 0 THEN 1 ELSE 0 END," \
	"       updated_at = CASE WHEN slot OPERATOR(pg_catalog.=) 0" \
	"                          OR value OPERATOR(pg_catalog.<>) 0" \
	"                         THEN pg_catalog.clock_timestamp() ELSE updated_at END" bounds \
	" WHERE name OPERATOR(pg_catalog.=) $1"

static TsStatement ts_stmt_set = {
	TS_SQL_SET(", lower = $3, upper = $4,"
			   "  slot_lower = CASE WHEN slot OPERATOR(pg_catalog.=) 0 THEN $5 ELSE $6 END,"
			   "  slot_upper = CASE WHEN slot OPERATOR(pg_catalog.=) 0 THEN $7 ELSE $8 END"),
	8, {TEXTOID, INT8OID, INT8OID, INT8OID, INT8OID, INT8OID, INT8OID, INT8OID}
};

static TsStatement ts_stmt_set_1_4 = {
	TS_SQL_SET(""), 2, {TEXTOID, INT8OID}
};

static TsStatement ts_stmt_delete = {
	"DELETE FROM turnstile.counter_slot WHERE name OPERATOR(pg_catalog.=) $1",
	1, {TEXTOID}
};

/* an overflowed hot counter (see ts_counter_value) is listed with NULL value */
#define TS_SQL_LIST(bounds) \
	"SELECT name," \
	"       CASE WHEN pg_catalog.sum(value) OPERATOR(pg_catalog.>=) -9223372036854775808" \
	"             AND pg_catalog.sum(value) OPERATOR(pg_catalog.<=) 9223372036854775807" \
	"            THEN pg_catalog.sum(value)::pg_catalog.int8 END," \
	"       pg_catalog.sum(version)::pg_catalog.int8, pg_catalog.max(slots)," \
	"       pg_catalog.min(created_at), pg_catalog.max(updated_at)" bounds \
	"  FROM turnstile.counter_slot" \
	" GROUP BY name ORDER BY name"

static TsStatement ts_stmt_list = {
	TS_SQL_LIST(", pg_catalog.max(lower), pg_catalog.max(upper)"), 0, {InvalidOid}
};

/* (counter_state has the bounds' columns since 1.5 too) */
static TsStatement ts_stmt_list_1_4 = {
	TS_SQL_LIST(""), 0, {InvalidOid}
};

/* The statement for the installed SQL version: counter_slot has bounds since 1.5. */
static inline TsStatement *
ts_counter_stmt(TsStatement *stmt, TsStatement *stmt_1_4)
{
	return ts_counter_has_bounds() ? stmt : stmt_1_4;
}

/*
 * The slots' shares of a counter's bounds (the escrow).  The room between
 * the value and each bound is dealt out evenly over the slots, slot 0
 * taking what does not divide.  A slot whose value stays within its share
 * needs to know nothing about the others: the shares of all the slots add
 * up to the bounds, so the sum of the slots stays within them.  Slot 0
 * holds the value; the others hold 0, with the share [-room, room].
 * Computed in 128 bits: the room may be all of the bigint range, and a
 * share of it (half at most, as there are at least two slots) fits again.
 *
 * A counter with a bound on one side only gets shares on the other side
 * too, of the room up to the end of the bigint range: else a hot counter's
 * slots could each stay in range there and together pass it, and a
 * counter_try_incr on one slot could not know.  A counter without bounds
 * keeps none (NULL), as before bounds existed.
 */
typedef struct TsShares
{
	Datum		args[6];		/* lower, upper, slot 0's lower, the others'
								 * lower, slot 0's upper, the others' upper */
	char		nulls[6];		/* 'n' where unbounded */
} TsShares;

static void
ts_counter_shares(const TsCounterState *state, int64 value, int32 slots, TsShares *shares)
{
	int128		lower_room = ((int128) value - state->lower) / slots;
	int128		upper_room = ((int128) state->upper - value) / slots;

	memset(shares->nulls, ' ', sizeof(shares->nulls));
	shares->args[0] = Int64GetDatum(state->lower);
	shares->args[1] = Int64GetDatum(state->upper);
	shares->args[2] = Int64GetDatum((int64) (state->lower + (slots - 1) * lower_room));
	shares->args[4] = Int64GetDatum((int64) (state->upper - (slots - 1) * upper_room));
	/* with one slot there are no others, and their room may not fit */
	shares->args[3] = Int64GetDatum(slots > 1 ? (int64) -lower_room : 0);
	shares->args[5] = Int64GetDatum(slots > 1 ? (int64) upper_room : 0);
	if (!state->has_lower)
		shares->nulls[0] = 'n';
	if (!state->has_upper)
		shares->nulls[1] = 'n';
	if (!state->has_lower && !state->has_upper)
		shares->nulls[2] = shares->nulls[3] = shares->nulls[4] = shares->nulls[5] = 'n';
}

/*
 * Read the name argument and compute its key.
 */
void
ts_counter_from_arg(FunctionCallInfo fcinfo, TsCounter *counter)
{
	ts_require_arg(PG_ARGISNULL(0), "name");
	counter->name = ts_name_arg(PG_GETARG_DATUM(0), "counter", &counter->len);
	counter->key = ts_counter_key(counter->name, counter->len);
}

static void
ts_report_overflow(const TsCounter *counter, int64 value, int64 delta)
{
	ereport(ERROR,
			(errcode(ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE),
			 errmsg("counter \"%s\" would leave the bigint range", counter->name),
			 errdetail("Adding " INT64_FORMAT " to " INT64_FORMAT " does not fit in a bigint.",
					   delta, value)));
}

/*
 * Does target, a value a call would give the counter, stay within its
 * bounds?  If not, and how is TS_BOUNDS_RAISE, raise: 23514 for a bound the
 * counter has, 22003 for the end of the bigint range on a side without one
 * (which only an increment can reach).  The DETAIL gives the change: delta,
 * or for a call that sets the counter, the value it sets.
 */
static bool
ts_counter_within(const TsCounter *counter, const TsCounterState *state, int128 target,
				  TsOutOfBounds how, int64 delta, bool sets)
{
	bool		below = target < state->lower;
	bool		bounded = below ? state->has_lower : state->has_upper;
	char	   *change;

	if (!below && target <= state->upper)
		return true;
	if (how != TS_BOUNDS_RAISE)
		return false;
	if (!bounded)
		ts_report_overflow(counter, state->value, delta);
	change = sets ? psprintf("change to " INT64_FORMAT, (int64) target) :
		psprintf("change " INT64_FORMAT, delta);
	ereport(ERROR,
			(errcode(ERRCODE_CHECK_VIOLATION),
			 below ?
			 errmsg("counter \"%s\" would go below its lower bound", counter->name) :
			 errmsg("counter \"%s\" would go above its upper bound", counter->name),
			 below ?
			 errdetail("Current value " INT64_FORMAT ", %s, lower bound " INT64_FORMAT ".",
					   state->value, change, state->lower) :
			 errdetail("Current value " INT64_FORMAT ", %s, upper bound " INT64_FORMAT ".",
					   state->value, change, state->upper)));
	return false;				/* not reached */
}

/* ts_counter_within for a call that sets the counter to value */
static void
ts_counter_check_set(const TsCounter *counter, const TsCounterState *state, int64 value)
{
	(void) ts_counter_within(counter, state, value, TS_BOUNDS_RAISE, 0, true);
}

/*
 * Read a counter's state with the given snapshot: the sum over its slots.
 * Runs inside a store session.
 */
static void
ts_counter_read(const TsCounter *counter, Snapshot snapshot, TsCounterState *state)
{
	Datum		args[1] = {CStringGetTextDatum(counter->name)};
	int			rows;

	/* not read-only: SPI then lets the snapshot see this call's own writes */
	rows = ts_store_exec(ts_counter_stmt(&ts_stmt_read, &ts_stmt_read_1_4), args, NULL,
						 snapshot, false);

	memset(state, 0, sizeof(*state));
	state->exists = rows > 0;
	state->lower = PG_INT64_MIN;
	state->upper = PG_INT64_MAX;

	for (int row = 0; row < rows; row++)
	{
		bool		isnull;
		int64		value = DatumGetInt64(ts_store_value(row, 2, &isnull));
		int64		version = DatumGetInt64(ts_store_value(row, 3, &isnull));
		TimestampTz created_at = DatumGetTimestampTz(ts_store_value(row, 4, &isnull));
		TimestampTz updated_at = DatumGetTimestampTz(ts_store_value(row, 5, &isnull));
		Datum		upper;

		state->slots = DatumGetInt32(ts_store_value(row, 1, &isnull));
		if (row == 0)
		{
			Datum		lower = ts_store_value(row, 6, &isnull);

			if (!isnull)
			{
				state->has_lower = true;
				state->lower = DatumGetInt64(lower);
			}
			upper = ts_store_value(row, 7, &isnull);
			if (!isnull)
			{
				state->has_upper = true;
				state->upper = DatumGetInt64(upper);
			}
		}
		if (pg_add_s64_overflow(state->value, value, &state->value))
			state->overflowed = true;
		state->version += version;
		state->created_at = created_at;
		if (row == 0 || updated_at > state->updated_at)
			state->updated_at = updated_at;
	}
}

/*
 * The value of a counter that was read, for a caller that needs it.  Hot
 * increments running at once can each stay in range and still together push
 * the sum of the slots past bigint; such a counter can be reset or dropped,
 * but it has no value.
 */
static int64
ts_counter_value(const TsCounter *counter, const TsCounterState *state)
{
	if (state->overflowed)
		ereport(ERROR,
				(errcode(ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE),
				 errmsg("value of hot counter \"%s\" is out of the bigint range",
						counter->name),
				 errdetail("Increments that ran at once on different slots together went past the range."),
				 errhint("Use counter_set to bring it back into range.")));
	return state->value;
}

static void
ts_report_changed(const TsCounter *counter)
{
	ts_policy_report_conflict(psprintf("counter \"%s\"", counter->name), "changed",
							  "counter changed");
}

/*
 * Under "repeatable read" and "serializable", refuse to act when the key
 * changed after the caller's snapshot.  Call with the key locked, so that the
 * latest state cannot move while we compare.
 */
static void
ts_counter_check_unchanged(const TsCounter *counter, Snapshot snapshot)
{
	TsCounterState seen;
	TsCounterState latest;
	Snapshot	latest_snapshot;

	if (ts_policy_uses_latest())
		return;

	ts_counter_read(counter, snapshot, &seen);
	latest_snapshot = ts_latest_snapshot();
	ts_counter_read(counter, latest_snapshot, &latest);
	ts_policy_release(latest_snapshot);

	/*
	 * created_at tells a counter dropped and created again, slots one that
	 * grew (grow.c), and the bounds a counter_bounds: none of these changes
	 * the value or the version
	 */
	if (seen.exists != latest.exists || seen.version != latest.version ||
		seen.created_at != latest.created_at || seen.slots != latest.slots ||
		seen.lower != latest.lower || seen.upper != latest.upper ||
		seen.has_lower != latest.has_lower || seen.has_upper != latest.has_upper)
		ts_report_changed(counter);
}

/*
 * Lock a counter exclusively and take the policy's snapshot.  The caller
 * releases the snapshot with ts_policy_release.
 */
static Snapshot
ts_counter_begin_exclusive(const TsCounter *counter)
{
	Snapshot	snapshot;

	ts_require_writable("counter \"%s\"", counter->name);
	ts_policy_check_level();
	for (;;)
	{
		TransactionId writer;

		ts_lock_counter(counter->key, ExclusiveLock, counter->name);
		/* a transaction in progress that wrote the counter still holds it */
		writer = ts_counter_writer(counter->name);
		if (!TransactionIdIsValid(writer))
			break;
		ts_unlock_counter(counter->key, ExclusiveLock);
		ts_counter_wait_writer(counter->key, writer, counter->name);
	}
	snapshot = ts_policy_snapshot();
	ts_counter_check_unchanged(counter, snapshot);
	return snapshot;
}

/*
 * The end of an exclusive call: its rows, if it wrote any, hold the counter
 * from now on (keylock.c), so its lock goes.
 */
static void
ts_counter_end_exclusive(const TsCounter *counter, Snapshot snapshot)
{
	ts_policy_release(snapshot);
	if (ts_keys_held_by_rows())
		ts_unlock_counter(counter->key, ExclusiveLock);
}

/*
 * A call that changes a counter as a whole (create, set, the conditional
 * puts): the store opened, the counter locked exclusively and read.
 */
typedef struct TsExclusiveCall
{
	TsStoreSession session;
	Snapshot	snapshot;
	TsCounterState state;
} TsExclusiveCall;

static void
ts_exclusive_call_begin(const TsCounter *counter, TsExclusiveCall *call)
{
	ts_store_open(&call->session);
	call->snapshot = ts_counter_begin_exclusive(counter);
	ts_counter_read(counter, call->snapshot, &call->state);
}

static void
ts_exclusive_call_end(const TsCounter *counter, TsExclusiveCall *call)
{
	ts_counter_end_exclusive(counter, call->snapshot);
	ts_store_close(&call->session);
}

/*
 * Create a counter with value and slots, and the bounds in bounds (which
 * the caller checked value against).
 */
static void
ts_counter_insert(const TsCounter *counter, Snapshot snapshot, int64 value, int32 slots,
				  const TsCounterState *bounds)
{
	Datum		args[9] = {
		CStringGetTextDatum(counter->name), Int64GetDatum(value), Int32GetDatum(slots)
	};
	char		nulls[9] = "   ";
	TsShares	shares;

	ts_counter_shares(bounds, value, slots, &shares);
	memcpy(&args[3], shares.args, sizeof(shares.args));
	memcpy(&nulls[3], shares.nulls, sizeof(shares.nulls));
	ts_store_exec(ts_counter_stmt(&ts_stmt_insert, &ts_stmt_insert_1_4), args, nulls,
				  snapshot, false);
}

/*
 * Set an existing counter to value, or create it (one slot, no bounds) with
 * that value.  The value is within the bounds in state, which the counter
 * takes, and the room left is dealt out to its slots again.
 */
static void
ts_counter_write(const TsCounter *counter, Snapshot snapshot,
				 const TsCounterState *state, int64 value)
{
	Datum		args[8] = {CStringGetTextDatum(counter->name), Int64GetDatum(value)};
	char		nulls[8] = "  ";
	TsShares	shares;

	if (!state->exists)
	{
		ts_counter_insert(counter, snapshot, value, 1, state);
		return;
	}
	ts_counter_shares(state, value, state->slots, &shares);
	memcpy(&args[2], shares.args, sizeof(shares.args));
	memcpy(&nulls[2], shares.nulls, sizeof(shares.nulls));
	ts_store_exec(ts_counter_stmt(&ts_stmt_set, &ts_stmt_set_1_4), args, nulls,
				  snapshot, false);
}

/*
 * The exclusive path of an increment: with the counter locked exclusively,
 * create it if absent and set it to its exact total plus delta, if that
 * stays within its bounds (else as how says; *applied is what was added).
 * Writing the total deals the room left out to the slots again, which is
 * what a hot bounded counter's increment that ran out of its slot's share
 * came here for.
 */
static int64
ts_counter_add_exclusive(const TsCounter *counter, int64 delta, TsOutOfBounds how,
						 int64 *applied)
{
	Snapshot	snapshot = ts_counter_begin_exclusive(counter);
	TsCounterState state;
	int128		target;

	ts_counter_read(counter, snapshot, &state);
	target = (int128) ts_counter_value(counter, &state) + delta;
	if (!ts_counter_within(counter, &state, target, how, delta, false))
	{
		if (how == TS_BOUNDS_SKIP)
			target = state.value;
		else
			target = target < state.lower ? state.lower : state.upper;
	}
	/* within the bounds; the change is no larger than delta, so it fits */
	*applied = (int64) (target - state.value);
	/* an increment that applies writes, even of 0; one that adds nothing does not */
	if (*applied == delta || *applied != 0)
		ts_counter_write(counter, snapshot, &state, (int64) target);

	ts_counter_end_exclusive(counter, snapshot);
	return (int64) target;
}

/*
 * The total of a hot counter after an increment: the slot's new value plus
 * the other slots.  If that leaves the bigint range, raise; the increment
 * rolls back with the error.
 */
static int64
ts_counter_total(const TsCounter *counter, int64 slot_value, int64 delta,
				 int64 others, bool others_overflowed)
{
	int64		result;
	int64		before;

	if (!others_overflowed && !pg_add_s64_overflow(slot_value, others, &result))
		return result;

	/* the counter's value before this increment, if it had one */
	if (others_overflowed || pg_add_s64_overflow(slot_value - delta, others, &before))
		(void) ts_counter_value(counter, &(TsCounterState) {.overflowed = true});
	ts_report_overflow(counter, before, delta);
	return 0;					/* not reached */
}

/*
 * Add delta to one slot through SQL, for a counter_slot table that someone
 * gave a trigger or another index (see ts_counter_slot_add).  Same contract
 * as ts_counter_slot_add: in particular it writes nothing when the counter
 * is hot and the caller locked for a plain one, or the reverse, because the
 * locks taken for a plain guess would make a hot counter's increments queue
 * (and the slot chosen would not be this backend's).
 */
static TsSlotAdd
ts_counter_slot_add_sql(const TsCounter *counter, int slot, int expected_slots,
						int64 delta, Snapshot snapshot, TsSlotAdded *added)
{
	Datum		args[6];
	bool		isnull;
	TsStoreSession session;
	TsSlotAdd	outcome = TS_SLOT_NOT_ADDED;

	/* the slot may hold any value that stays in range after adding delta */
	args[0] = CStringGetTextDatum(counter->name);
	args[1] = Int32GetDatum(slot);
	args[2] = Int64GetDatum(delta);
	args[3] = Int64GetDatum(delta < 0 ? PG_INT64_MIN - delta : PG_INT64_MIN);
	args[4] = Int64GetDatum(delta > 0 ? PG_INT64_MAX - delta : PG_INT64_MAX);
	args[5] = BoolGetDatum(expected_slots > 1);

	memset(added, 0, sizeof(*added));
	ts_store_open(&session);
	if (ts_store_exec(ts_counter_stmt(&ts_stmt_add, &ts_stmt_add_1_4), args, NULL,
					  snapshot, false) == 1)
	{
		added->slot_value = DatumGetInt64(ts_store_value(0, 1, &isnull));
		added->slots = DatumGetInt32(ts_store_value(0, 2, &isnull));
		ts_counter_slots_remember(counter->key, added->slots);
		outcome = TS_SLOT_ADDED;
	}
	ts_store_close(&session);

	/* the caller chooses its locks again from the actual slot count */
	if (outcome == TS_SLOT_NOT_ADDED)
		added->slots = ts_counter_slots_peek(counter->name);
	return outcome;
}

/*
 * One try at the fast path, under the locks the caller took for a counter
 * of expected_slots slots (see ts_counter_slot_add).  On TS_SLOT_ADDED,
 * *result is the counter's new total; *actual_slots is the slot count the
 * row showed, 0 if there was no row; on TS_SLOT_BUSY, *writer is the
 * transaction that holds the slot's row.
 */
static TsSlotAdd
ts_counter_try_add(const TsCounter *counter, int slot, int expected_slots,
				   int64 delta, int64 *result, int *actual_slots, TransactionId *writer)
{
	Snapshot	snapshot = ts_policy_snapshot();
	TsSlotAdd	outcome;
	TsSlotAdded added;

	if (!ts_policy_uses_latest())
	{
		TsStoreSession session;

		ts_store_open(&session);
		ts_counter_check_unchanged(counter, snapshot);
		ts_store_close(&session);
	}

	outcome = ts_counter_slot_add(counter->name, counter->key, slot, expected_slots,
								  delta, snapshot, &added);
	if (outcome == TS_SLOT_NO_DIRECT_PATH)
		outcome = ts_counter_slot_add_sql(counter, slot, expected_slots,
										  delta, snapshot, &added);
	if (outcome == TS_SLOT_CHANGED)
		ts_report_changed(counter);

	if (outcome == TS_SLOT_ADDED)
	{
		*result = added.slot_value;
		if (added.slots > 1)
		{
			/* the SQL path reads its own slot only */
			if (!added.others_known)
				added.others = ts_counter_sum_others(counter->name, counter->key, slot,
													 snapshot, &added.others_overflowed);
			*result = ts_counter_total(counter, added.slot_value, delta,
									   added.others, added.others_overflowed);
		}
	}
	ts_policy_release(snapshot);
	*actual_slots = added.slots;
	*writer = outcome == TS_SLOT_BUSY ? added.writer : InvalidTransactionId;
	return outcome;
}

/*
 * A hot increment: under the counter's ShareLock, take the first slot,
 * from this backend's last one on, whose lock no call holds and whose row no
 * other open transaction holds (keylock.c), and add delta there.  A slot row
 * this transaction wrote itself is free to it, so a transaction that holds a
 * slot never waits for another's.  When every slot is taken, the counter
 * asks to grow (grow.c) and waits, for the holder of one of the slots (or
 * for a call that holds one's lock), then returns TS_SLOT_BUSY for the
 * caller to start over.
 * TS_SLOT_NOT_ADDED when the counter is not hot after all, or would
 * overflow the slot.  Every lock taken here is given back before it returns.
 */
static TsSlotAdd
ts_counter_add_hot(const TsCounter *counter, int slots, int64 delta,
				   int64 *result, TransactionId *writer)
{
	int			start = ts_counter_slot_to_start(counter->key, slots);
	TransactionId busy_writer = InvalidTransactionId;
	int			busy_slot = start;

	ts_lock_counter(counter->key, ShareLock, counter->name);
	for (int i = 0; i < slots; i++)
	{
		int			slot = (start + i) % slots;
		int			actual_slots;
		TransactionId slot_writer;
		TsSlotAdd	outcome;

		if (!ts_try_lock_counter_slot(counter->key, slot))
			continue;
		outcome = ts_counter_try_add(counter, slot, slots, delta, result,
									 &actual_slots, &slot_writer);
		if (outcome == TS_SLOT_BUSY)
		{
			ts_unlock_counter_slot(counter->key, slot);
			if (!TransactionIdIsValid(busy_writer))
			{
				busy_writer = slot_writer;
				busy_slot = slot;
			}
			continue;
		}
		if (outcome == TS_SLOT_ADDED)
		{
			ts_counter_slot_taken(counter->key, slot);
			if (!ts_keys_held_by_rows())
				return outcome;
		}
		ts_unlock_counter_slot(counter->key, slot);
		ts_unlock_counter(counter->key, ShareLock);
		return outcome;
	}
	ts_unlock_counter(counter->key, ShareLock);

	ts_counter_request_growth(counter->key, slots, counter->name);
	if (TransactionIdIsValid(busy_writer))
		ts_counter_slot_wait_writer(counter->key, busy_slot, busy_writer, counter->name);
	else
		ts_wait_counter_slot(counter->key, start, counter->name);
	*writer = InvalidTransactionId;	/* waited already */
	return TS_SLOT_BUSY;
}

/*
 * The increment of a plain counter, whose exclusive lock the caller took:
 * add to its one row, and give the lock back, since the written row holds
 * the counter from now on (keylock.c).
 */
static inline TsSlotAdd
ts_counter_add_plain(const TsCounter *counter, int64 delta, int64 *result,
					 int *slots, TransactionId *writer)
{
	TsSlotAdd	outcome = ts_counter_try_add(counter, 0, 1, delta, result, slots, writer);

	/* until ALTER EXTENSION UPDATE to 1.3, the lock lasts to the transaction's end */
	if (outcome != TS_SLOT_ADDED || ts_keys_held_by_rows())
		ts_unlock_counter(counter->key, ExclusiveLock);
	return outcome;
}

/*
 * Add delta to a counter and return its new total; *applied is what was
 * added, which is delta unless it would leave the bounds and how is
 * TS_BOUNDS_SKIP or TS_BOUNDS_CLAMP.
 *
 * The fast path updates one slot (counter_slot.c) under the locks chosen for the
 * slot count we expect (see the header comment on hot counters).  It adds
 * nothing when the counter is missing, when the count was wrong, or when the
 * slot would overflow; then the exclusive path decides exactly.  A slot row
 * that an open transaction holds is waited for (outside the counter's
 * locks), and the increment starts over.  The locks of a call last for the
 * call only: its written row holds the counter afterwards (keylock.c).
 */
static int64
ts_counter_add_bounded(const TsCounter *counter, int64 delta, TsOutOfBounds how,
					   int64 *applied)
{
	int			slots;
	int64		result;
	TsStoreSession session;
	TransactionId writer;
	TsSlotAdd	outcome;

	ts_require_writable("counter \"%s\"", counter->name);
	ts_policy_check_level();

	for (;;)
	{
		slots = ts_counter_slots_remembered(counter->key);
		if (slots == 0)
		{
			/*
			 * Most counters are plain.  If the counter's lock is free, take it
			 * exclusively and try the plain increment at once, which spares
			 * the probe of slot 0.  A counter that turns out hot gives that
			 * lock back unused, so that its increments do not queue behind
			 * it.
			 */
			if (ts_try_lock_counter(counter->key, ExclusiveLock))
			{
				outcome = ts_counter_add_plain(counter, delta, &result, &slots, &writer);
				if (outcome == TS_SLOT_ADDED)
				{
					*applied = delta;
					return result;
				}
				if (outcome == TS_SLOT_BUSY)
				{
					ts_counter_wait_writer(counter->key, writer, counter->name);
					continue;
				}
				if (slots <= 1)
					break;
			}
			else
				slots = ts_counter_slots_peek(counter->name);
		}

		if (slots > 1)
			outcome = ts_counter_add_hot(counter, slots, delta, &result, &writer);
		else
		{
			ts_lock_counter(counter->key, ExclusiveLock, counter->name);
			outcome = ts_counter_add_plain(counter, delta, &result, &slots, &writer);
		}
		if (outcome == TS_SLOT_ADDED)
		{
			*applied = delta;
			return result;
		}
		if (outcome != TS_SLOT_BUSY)
			break;
		/* without a writer, only calls held the slots, and one has ended */
		if (TransactionIdIsValid(writer))
			ts_counter_wait_writer(counter->key, writer, counter->name);
	}

	ts_counter_slots_remember(counter->key, 1);
	ts_store_open(&session);
	result = ts_counter_add_exclusive(counter, delta, how, applied);
	ts_store_close(&session);
	return result;
}

/*
 * Add delta to a counter and return its new total; raise if that would
 * leave its bounds.
 */
int64
ts_counter_add(const TsCounter *counter, int64 delta)
{
	int64		applied;

	return ts_counter_add_bounded(counter, delta, TS_BOUNDS_RAISE, &applied);
}

/*
 * Read bounds from arguments lower_arg and lower_arg + 1 (NULL: none) into
 * bounds, refusing a lower bound above the upper one as CREATE SEQUENCE
 * refuses MINVALUE above MAXVALUE.
 */
static void
ts_bounds_from_args(FunctionCallInfo fcinfo, int lower_arg, const TsCounter *counter,
					TsCounterState *bounds)
{
	bounds->has_lower = !PG_ARGISNULL(lower_arg);
	bounds->has_upper = !PG_ARGISNULL(lower_arg + 1);
	bounds->lower = bounds->has_lower ? PG_GETARG_INT64(lower_arg) : PG_INT64_MIN;
	bounds->upper = bounds->has_upper ? PG_GETARG_INT64(lower_arg + 1) : PG_INT64_MAX;
	if (bounds->lower > bounds->upper)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("lower bound " INT64_FORMAT " is above upper bound " INT64_FORMAT,
						bounds->lower, bounds->upper),
				 errdetail("Counter \"%s\" was not changed.", counter->name)));
	if ((bounds->has_lower || bounds->has_upper) && !ts_counter_has_bounds())
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("counter bounds need pg_turnstile 1.5"),
				 errhint("Run ALTER EXTENSION pg_turnstile UPDATE.")));
}

/*
 * counter_create(name, initial = 0, slots = 1, lower = NULL, upper = NULL)
 *	 -> bigint
 *
 * A counter that exists keeps its slots and bounds (counter_bounds changes
 * them).  Before ALTER EXTENSION UPDATE to 1.5 the SQL function has three
 * arguments.
 */
Datum
counter_create(PG_FUNCTION_ARGS)
{
	TsCounter	counter;
	int64		initial;
	int32		slots;
	TsCounterState bounds = {.lower = PG_INT64_MIN, .upper = PG_INT64_MAX};
	TsExclusiveCall call;

	ts_counter_from_arg(fcinfo, &counter);
	initial = ts_int64_arg(fcinfo, 1, "initial");
	ts_require_arg(PG_ARGISNULL(2), "slots");
	slots = PG_GETARG_INT32(2);
	if (slots < 1 || slots > TURNSTILE_SLOTS_MAX)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("slots must be between 1 and %d", TURNSTILE_SLOTS_MAX),
				 errdetail("Counter \"%s\" was given %d slots.", counter.name, slots)));
	if (PG_NARGS() >= 5)
		ts_bounds_from_args(fcinfo, 3, &counter, &bounds);

	ts_exclusive_call_begin(&counter, &call);
	if (!call.state.exists)
	{
		if (!ts_counter_within(&counter, &bounds, initial, TS_BOUNDS_SKIP, 0, true))
			ereport(ERROR,
					(errcode(ERRCODE_CHECK_VIOLATION),
					 initial < bounds.lower ?
					 errmsg("counter \"%s\" would go below its lower bound", counter.name) :
					 errmsg("counter \"%s\" would go above its upper bound", counter.name),
					 errdetail("Initial value " INT64_FORMAT ", %s bound " INT64_FORMAT ".",
							   initial, initial < bounds.lower ? "lower" : "upper",
							   initial < bounds.lower ? bounds.lower : bounds.upper)));
		ts_counter_insert(&counter, call.snapshot, initial, slots, &bounds);
		call.state.value = initial;
	}
	ts_exclusive_call_end(&counter, &call);

	PG_RETURN_INT64(ts_counter_value(&counter, &call.state));
}

/*
 * counter_incr(name, delta = 1) -> bigint
 */
Datum
counter_incr(PG_FUNCTION_ARGS)
{
	TsCounter	counter;
	int64		delta;

	ts_counter_from_arg(fcinfo, &counter);
	delta = ts_int64_arg(fcinfo, 1, "delta");
	PG_RETURN_INT64(ts_counter_add(&counter, delta));
}

/*
 * counter_decr(name, delta = 1) -> bigint: counter_incr(name, -delta)
 */
Datum
counter_decr(PG_FUNCTION_ARGS)
{
	TsCounter	counter;
	int64		delta;

	ts_counter_from_arg(fcinfo, &counter);
	delta = ts_int64_arg(fcinfo, 1, "delta");
	if (delta == PG_INT64_MIN)
		ereport(ERROR,
				(errcode(ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE),
				 errmsg("delta " INT64_FORMAT " cannot be negated", delta),
				 errdetail("Counter \"%s\" was not changed.", counter.name)));
	PG_RETURN_INT64(ts_counter_add(&counter, -delta));
}

/*
 * counter_incr(name, delta, expected) -> bigint
 *
 * The conditional put.  A missing counter counts as 0 and is created only if
 * the increment applies.
 */
Datum
counter_incr_expected(PG_FUNCTION_ARGS)
{
	TsCounter	counter;
	int64		delta;
	int64		expected;
	int64		result;
	TsExclusiveCall call;

	ts_counter_from_arg(fcinfo, &counter);
	delta = ts_int64_arg(fcinfo, 1, "delta");
	expected = ts_int64_arg(fcinfo, 2, "expected");

	ts_exclusive_call_begin(&counter, &call);
	if (ts_counter_value(&counter, &call.state) != expected)
		ereport(ERROR,
				(errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
				 errmsg("counter \"%s\" is out of sync", counter.name),
				 call.state.exists ?
				 errdetail("Expected value " INT64_FORMAT ", current value " INT64_FORMAT ".",
						   expected, call.state.value) :
				 errdetail("Expected value " INT64_FORMAT ", current value 0 (the counter does not exist).",
						   expected),
				 errhint("Retry with the current value as expected.")));
	(void) ts_counter_within(&counter, &call.state, (int128) call.state.value + delta,
							 TS_BOUNDS_RAISE, delta, false);
	result = call.state.value + delta;
	ts_counter_write(&counter, call.snapshot, &call.state, result);
	ts_exclusive_call_end(&counter, &call);

	PG_RETURN_INT64(result);
}

/*
 * counter_cas(name, expected, new_value)
 *	 -> (applied, value, version, updated_at)
 *
 * The non-raising conditional put.  A missing counter counts as 0 and is
 * created only if the put applies; if it does not, the result's value,
 * version and updated_at are NULL, which tells the caller it is missing.
 */
Datum
counter_cas(PG_FUNCTION_ARGS)
{
	TsCounter	counter;
	int64		expected;
	int64		new_value;
	bool		applied;
	TsExclusiveCall call;
	TupleDesc	tupdesc;
	Datum		values[4];
	bool		nulls[4] = {false, false, false, false};

	ts_counter_from_arg(fcinfo, &counter);
	expected = ts_int64_arg(fcinfo, 1, "expected");
	new_value = ts_int64_arg(fcinfo, 2, "new_value");
	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "counter_cas must return a record");

	ts_exclusive_call_begin(&counter, &call);
	applied = (ts_counter_value(&counter, &call.state) == expected);
	if (applied)
	{
		ts_counter_check_set(&counter, &call.state, new_value);
		ts_counter_write(&counter, call.snapshot, &call.state, new_value);
		ts_counter_read(&counter, call.snapshot, &call.state);
	}
	ts_exclusive_call_end(&counter, &call);

	values[0] = BoolGetDatum(applied);
	values[1] = Int64GetDatum(call.state.value);
	values[2] = Int64GetDatum(call.state.version);
	values[3] = TimestampTzGetDatum(call.state.updated_at);
	if (!call.state.exists)
		nulls[1] = nulls[2] = nulls[3] = true;

	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(BlessTupleDesc(tupdesc),
													  values, nulls)));
}

/*
 * Read a counter without locking it, under the isolation policy.
 */
static void
ts_counter_read_unlocked(const TsCounter *counter, TsCounterState *state)
{
	Snapshot	snapshot;
	TsStoreSession session;

	ts_store_open(&session);
	snapshot = ts_policy_snapshot();
	ts_counter_read(counter, snapshot, state);
	ts_policy_release(snapshot);
	ts_store_close(&session);
}

/*
 * counter_get(name) -> bigint, NULL if there is no such counter
 */
Datum
counter_get(PG_FUNCTION_ARGS)
{
	TsCounter	counter;
	TsCounterState state;
	Snapshot	snapshot;

	/* no lock: the policy's snapshot shows a committed state (see snapshot.c) */
	ts_counter_from_arg(fcinfo, &counter);
	snapshot = ts_policy_snapshot();
	memset(&state, 0, sizeof(state));
	state.exists = ts_counter_sum(counter.name, counter.key, snapshot, &state.value,
								  &state.overflowed);
	ts_policy_release(snapshot);
	if (!state.exists)
		PG_RETURN_NULL();
	PG_RETURN_INT64(ts_counter_value(&counter, &state));
}

/*
 * counter_set(name, value) -> bigint
 */
Datum
counter_set(PG_FUNCTION_ARGS)
{
	TsCounter	counter;
	int64		value;
	TsExclusiveCall call;

	ts_counter_from_arg(fcinfo, &counter);
	value = ts_int64_arg(fcinfo, 1, "value");

	ts_exclusive_call_begin(&counter, &call);
	ts_counter_check_set(&counter, &call.state, value);
	ts_counter_write(&counter, call.snapshot, &call.state, value);
	ts_exclusive_call_end(&counter, &call);

	PG_RETURN_INT64(value);
}

/*
 * counter_drop(name) -> boolean
 */
Datum
counter_drop(PG_FUNCTION_ARGS)
{
	TsCounter	counter;
	Snapshot	snapshot;
	Datum		args[1];
	int			rows;
	TsStoreSession session;

	ts_counter_from_arg(fcinfo, &counter);
	args[0] = CStringGetTextDatum(counter.name);

	ts_store_open(&session);
	snapshot = ts_counter_begin_exclusive(&counter);
	rows = ts_store_exec(&ts_stmt_delete, args, NULL, snapshot, false);
	ts_counter_end_exclusive(&counter, snapshot);
	ts_store_close(&session);

	PG_RETURN_BOOL(rows > 0);
}

/* The columns of turnstile.counter_state; the last two since 1.5. */
static const Oid ts_counter_state_types[] = {
	TEXTOID, INT8OID, INT8OID, INT4OID, TIMESTAMPTZOID, TIMESTAMPTZOID, INT8OID, INT8OID
};

/*
 * counter_info(name) -> setof counter_state: one row, or none if absent
 */
Datum
counter_info(PG_FUNCTION_ARGS)
{
	TsCounter	counter;
	TsCounterState state;

	ts_counter_from_arg(fcinfo, &counter);
	InitMaterializedSRF(fcinfo, 0);
	ts_check_row_type(fcinfo, lengthof(ts_counter_state_types) - (ts_counter_has_bounds() ? 0 : 2),
					  ts_counter_state_types);
	ts_counter_read_unlocked(&counter, &state);

	if (state.exists)
	{
		Datum		values[8] = {
			CStringGetTextDatum(counter.name),
			Int64GetDatum(ts_counter_value(&counter, &state)),
			Int64GetDatum(state.version), Int32GetDatum(state.slots),
			TimestampTzGetDatum(state.created_at),
			TimestampTzGetDatum(state.updated_at),
			Int64GetDatum(state.lower), Int64GetDatum(state.upper)
		};
		bool		nulls[8] = {false, false, false, false, false, false,
		!state.has_lower, !state.has_upper};

		ts_put_row(fcinfo, values, nulls);
	}
	return (Datum) 0;
}

/*
 * counter_list() -> setof counter_state: every counter, for the view
 * turnstile.counters.  Like counter_get it reads under the isolation policy.
 */
Datum
counter_list(PG_FUNCTION_ARGS)
{
	Snapshot	snapshot;
	TsStoreSession session;

	InitMaterializedSRF(fcinfo, 0);
	ts_store_open(&session);
	snapshot = ts_policy_snapshot();
	ts_store_materialize(fcinfo, ts_counter_stmt(&ts_stmt_list, &ts_stmt_list_1_4), snapshot);
	ts_policy_release(snapshot);
	ts_store_close(&session);

	return (Datum) 0;
}

/*
 * counter_lock_key(name) -> bigint: the key of a counter's lock, as
 * (classid << 32 | objid) of its pg_locks row; used by turnstile.locks.
 */
Datum
counter_lock_key(PG_FUNCTION_ARGS)
{
	TsCounter	counter;

	ts_counter_from_arg(fcinfo, &counter);
	PG_RETURN_INT64((int64) counter.key);
}

/*
 * counter_bounds(name, lower, upper) -> void
 *
 * Give an existing counter new bounds, refusing any that exclude its value;
 * the room is dealt out to its slots anew.
 */
Datum
counter_bounds(PG_FUNCTION_ARGS)
{
	TsCounter	counter;
	TsCounterState bounds;
	TsExclusiveCall call;
	int64		value;

	ts_counter_from_arg(fcinfo, &counter);
	ts_bounds_from_args(fcinfo, 1, &counter, &bounds);

	ts_exclusive_call_begin(&counter, &call);
	if (!call.state.exists)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("counter \"%s\" does not exist", counter.name),
				 errhint("Create it with its bounds: counter_create(name, initial, slots, lower, upper).")));
	value = ts_counter_value(&counter, &call.state);
	if (value < bounds.lower || value > bounds.upper)
		ereport(ERROR,
				(errcode(ERRCODE_CHECK_VIOLATION),
				 errmsg("bounds exclude the value of counter \"%s\"", counter.name),
				 value < bounds.lower ?
				 errdetail("Current value " INT64_FORMAT ", new lower bound " INT64_FORMAT ".",
						   value, bounds.lower) :
				 errdetail("Current value " INT64_FORMAT ", new upper bound " INT64_FORMAT ".",
						   value, bounds.upper)));
	bounds.exists = true;
	bounds.slots = call.state.slots;
	ts_counter_write(&counter, call.snapshot, &bounds, value);
	ts_exclusive_call_end(&counter, &call);

	PG_RETURN_VOID();
}

/*
 * counter_try_incr(name, delta, clamp = false)
 *	 -> (applied, value, applied_delta)
 *
 * counter_incr that does not raise at a bound: it adds delta if the counter
 * stays within its bounds, else nothing, or with clamp as much as fits (up
 * to the bound, or the end of the bigint range on a side without one).
 * applied says whether all of delta was added, applied_delta how much was;
 * value is the counter's value after the call either way.
 */
Datum
counter_try_incr(PG_FUNCTION_ARGS)
{
	TsCounter	counter;
	int64		delta;
	bool		clamp;
	int64		applied_delta;
	TupleDesc	tupdesc;
	Datum		values[3];
	bool		nulls[3] = {false, false, false};

	ts_counter_from_arg(fcinfo, &counter);
	delta = ts_int64_arg(fcinfo, 1, "delta");
	ts_require_arg(PG_ARGISNULL(2), "clamp");
	clamp = PG_GETARG_BOOL(2);
	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "counter_try_incr must return a record");

	values[1] = Int64GetDatum(ts_counter_add_bounded(&counter, delta,
													 clamp ? TS_BOUNDS_CLAMP : TS_BOUNDS_SKIP,
													 &applied_delta));
	values[0] = BoolGetDatum(applied_delta == delta);
	values[2] = Int64GetDatum(applied_delta);

	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(BlessTupleDesc(tupdesc),
													  values, nulls)));
}
