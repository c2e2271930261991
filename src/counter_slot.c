/*-------------------------------------------------------------------------
 *
 * counter_slot.c
 *	  A counter's slot rows, read and written directly (relaccess.c): its
 *	  slot count, the sum of its slots, and one slot's increment.
 *
 * Every counter call needs one of these, and they are worth doing without
 * SPI:
 *
 * - a counter's slot count, which an increment needs before it can choose
 *   its locks: one probe of the counter's slot 0 row, or what this backend
 *   remembers (TsSlotMemo);
 *
 * - a counter's value for counter_get: the sum of its slots, read from where
 *   a hot counter's slot rows were last time;
 *
 * - the increment itself: one slot row updated in place, and, for a hot
 *   counter, the sum of its other slots read in the same pass, which the
 *   increment adds to its own slot's new value to return the total.  The
 *   write goes through CatalogTupleUpdate: despite its name it is the heap
 *   update plus index maintenance for a table whose indexes are plain
 *   columns, and, unlike heap_update, it is called the same way on every
 *   supported PostgreSQL version.  The table has no triggers and only its
 *   primary key, and the write path checks that before every write; if
 *   someone added a trigger or an index, the increment goes through SQL
 *   instead (TS_SLOT_NO_DIRECT_PATH), so that they fire and are maintained.
 *
 * What to do with what these find (which locks, when to grow, what to
 * return) is counter.c's business.
 *
 *-------------------------------------------------------------------------
 */
#include "relaccess.h"

#include "access/heapam.h"
#include "access/multixact.h"
#include "access/stratnum.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/indexing.h"
#include "common/int.h"
#include "executor/executor.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/timestamp.h"

/*
 * What a backend remembers of the hot counters it incremented or read lately.
 *
 * Their slot count, so that an increment can choose its locks without first
 * reading slot 0, the most contended row there is (counter.c).  Plain
 * counters are never remembered, so 10,000 of them cannot crowd the hot
 * ones out.  Reads fill entries too, so there is room for 64 counters: a
 * backend that reads a few dozen hot counters does not push out the ones it
 * increments.  The count is a guess that the increment checks against the
 * row it updates; a key collision costs the same as a stale count.
 *
 * And where their slot rows are: the root of each row's HOT chain, which is
 * what the index points to and which stays put while the row is updated in
 * place.  A hot increment reads every slot of its counter (its own to
 * update, the others to sum), and so does counter_get; fetching them from
 * their roots skips the index descent and its walk.  A version that the
 * snapshot shows in the chain at a root, with the counter's name and that
 * slot number, is the slot's current row (see ts_realm_memo); anything else
 * (a row that moved to another page, a dropped counter, a root that was
 * pruned and reused) sends the call back to the index, which remembers the
 * new roots.
 *
 * And the newest version of each row that it found (its tip).  Under a busy
 * counter a chain grows by dozens of versions between two prunings of its
 * page, and walking each chain from its root checks every one of them; the
 * walk starts at the tip instead, which is at most a few updates behind.
 * The tip only shortens the walk: when it does not lead to a version that
 * the snapshot shows, the walk starts again at the root.
 *
 * And the slot this backend's last increment of the counter took, where the
 * next one starts looking for a free slot (keylock.c).
 */
#define TS_SLOT_MEMO_COUNTERS	64
#define TS_SLOT_MEMO_SLOTS		64

typedef struct TsSlotMemo
{
	uint64		key;			/* the counter's lock key */
	int			slots;			/* its slot count; 0: entry unused */
	int			nroots;			/* slots when the roots are known, else 0 */
	int			last_slot;		/* the slot last taken, plus 1; 0: none yet */
	ItemPointerData roots[TS_SLOT_MEMO_SLOTS];
	ItemPointerData tips[TS_SLOT_MEMO_SLOTS];
} TsSlotMemo;

static TsSlotMemo ts_slot_memo[TS_SLOT_MEMO_COUNTERS];
static int	ts_slot_memo_filled = 0;	/* entries in use so far: the ones searched */
static int	ts_slot_memo_next = 0;	/* once all are, the entry to replace next */

/* Forget every counter: the table changed, and its rows may have moved. */
static void
ts_slot_memo_forget(void)
{
	memset(ts_slot_memo, 0, sizeof(ts_slot_memo));
	ts_slot_memo_filled = 0;
	ts_slot_memo_next = 0;
}

void
ts_counter_slot_init(void)
{
	ts_relaccess_on_change(ts_slot_memo_forget);
}


/*
 * Can counters have bounds?  Not until ALTER EXTENSION UPDATE to 1.5 adds
 * their columns.
 */
bool
ts_counter_has_bounds(void)
{
	ts_relaccess_lookup();
	return ts_rels.counter_has_bounds;
}

/*
 * A counter's slot count as its slot 0 row shows it in the latest committed
 * state, read without a lock; 1 if the counter does not exist (it will be
 * created plain).  The caller locks accordingly and then reads again, so a
 * counter dropped and created anew in between costs a retry, not a mistake.
 */
int
ts_counter_slots_peek(const char *name)
{
	Snapshot	snapshot;
	Relation	rel;
	TupleTableSlot *slot;
	ScanKeyData keys[2];
	int			slots = 1;

	ts_relaccess_lookup();
	snapshot = ts_latest_snapshot();
	rel = ts_relaccess_open(&ts_rels.counter_slot, AccessShareLock);
	slot = table_slot_create(rel, NULL);
	ScanKeyInit(&keys[0], 1, BTEqualStrategyNumber, F_TEXTEQ, CStringGetTextDatum(name));
	ScanKeyInit(&keys[1], 2, BTEqualStrategyNumber, F_INT4EQ, Int32GetDatum(0));
	if (ts_relaccess_fetch(rel, ts_rels.counter_slot_by_key, keys, 2, snapshot, slot))
		slots = DatumGetInt32(slot->tts_values[ts_rels.counter_slots - 1]);
	ExecDropSingleTupleTableSlot(slot);
	table_close(rel, AccessShareLock);
	ts_policy_release(snapshot);
	return slots;
}


/*
 * What one read of a counter's slot rows found.
 */
typedef struct TsSlotRows
{
	HeapTuple	own;			/* a copy of the row of the slot to update */
	int64		own_value;
	int64		own_version;
	int64		own_lower;		/* the slot's share of the bounds (escrow): */
	int64		own_upper;		/* its value stays in [own_lower, own_upper] */
	int32		slots;			/* the counter's slot count, from that row */
	int64		others;			/* the sum of the other slots' values */
	bool		others_overflowed;
	int			nrows;			/* how many slot rows there were */
	int32		rows_slots;		/* the slot count that they show */
} TsSlotRows;

/*
 * A counter's entry, or NULL.  Only the entries filled so far are searched,
 * so that a backend which increments plain counters only, whose every
 * increment asks, pays for no search at all.
 */
static TsSlotMemo *
ts_slot_memo_find(uint64 key)
{
	for (int i = 0; i < ts_slot_memo_filled; i++)
		if (ts_slot_memo[i].slots > 0 && ts_slot_memo[i].key == key)
			return &ts_slot_memo[i];
	return NULL;
}

/*
 * The slot count remembered for a counter (see TsSlotMemo), 0 if none.
 */
int
ts_counter_slots_remembered(uint64 key)
{
	TsSlotMemo *memo = ts_slot_memo_find(key);

	return memo != NULL ? memo->slots : 0;
}

/*
 * Remember a counter's slot count if it is hot, else forget the counter.
 */
void
ts_counter_slots_remember(uint64 key, int slots)
{
	TsSlotMemo *memo = ts_slot_memo_find(key);

	if (slots <= 1)
	{
		if (memo != NULL)
			memo->slots = 0;
		return;
	}
	if (memo == NULL)
	{
		if (ts_slot_memo_filled < TS_SLOT_MEMO_COUNTERS)
			memo = &ts_slot_memo[ts_slot_memo_filled++];
		else
		{
			memo = &ts_slot_memo[ts_slot_memo_next];
			ts_slot_memo_next = (ts_slot_memo_next + 1) % TS_SLOT_MEMO_COUNTERS;
		}
		memo->key = key;
		memo->nroots = 0;
		memo->last_slot = 0;
	}
	if (memo->slots != slots)
		memo->nroots = 0;
	memo->slots = slots;
}

/*
 * The slot at which a hot increment of a counter with the given slot count
 * starts looking for a free one: the slot this backend took last time, or
 * at first one that its pid chooses, so that backends start spread out.
 */
int
ts_counter_slot_to_start(uint64 key, int slots)
{
	TsSlotMemo *memo = ts_slot_memo_find(key);

	if (memo != NULL && memo->last_slot > 0 && memo->last_slot <= slots)
		return memo->last_slot - 1;
	return MyProcPid % slots;
}

/*
 * Remember the slot a hot increment took (see ts_counter_slot_to_start).
 */
void
ts_counter_slot_taken(uint64 key, int slot)
{
	TsSlotMemo *memo = ts_slot_memo_find(key);

	if (memo != NULL)
		memo->last_slot = slot + 1;
}

/*
 * A bound column of a slot row, or the end of the bigint range on its side
 * when it is NULL (unbounded) or, until ALTER EXTENSION UPDATE to 1.5, absent.
 */
static inline int64
ts_slot_bound(const Datum *values, const bool *isnull, AttrNumber attnum, int64 none)
{
	if (attnum == InvalidAttrNumber || isnull[attnum - 1])
		return none;
	return DatumGetInt64(values[attnum - 1]);
}

/*
 * Count one slot row, given its columns, into rows: the row of the slot to
 * update is copied, the others are summed.
 */
static void
ts_slot_rows_take(TsSlotRows *rows, int slot, Datum *values, bool *isnull, HeapTuple tuple)
{
	int64		value = DatumGetInt64(values[ts_rels.counter_value - 1]);

	rows->nrows++;
	rows->rows_slots = DatumGetInt32(values[ts_rels.counter_slots - 1]);
	if (DatumGetInt32(values[ts_rels.counter_slot_no - 1]) == slot)
	{
		rows->own = heap_copytuple(tuple);
		rows->own_value = value;
		rows->own_version = DatumGetInt64(values[ts_rels.counter_version - 1]);
		rows->own_lower = ts_slot_bound(values, isnull, ts_rels.counter_slot_lower,
										PG_INT64_MIN);
		rows->own_upper = ts_slot_bound(values, isnull, ts_rels.counter_slot_upper,
										PG_INT64_MAX);
		rows->slots = DatumGetInt32(values[ts_rels.counter_slots - 1]);
	}
	else if (pg_add_s64_overflow(rows->others, value, &rows->others))
		rows->others_overflowed = true;
}

/*
 * Read a counter's slot rows through the primary key, which is opened in
 * index_lockmode: with nkeys = 2 only the row of the given slot, with
 * nkeys = 1 all of them (slot -1 sums them all).  Remembers the slot count
 * the rows show and, when it read every slot of a hot counter, where they
 * are, for ts_slot_rows_at_roots.
 */
static void
ts_slot_rows_by_index(Relation rel, const char *name, uint64 key, int slot, int nkeys,
					  LOCKMODE index_lockmode, Snapshot snapshot, TsSlotRows *rows)
{
	Relation	index = index_open(ts_rels.counter_slot_by_key, index_lockmode);
	TupleTableSlot *tuple_slot = table_slot_create(rel, NULL);
	ItemPointerData roots[TS_SLOT_MEMO_SLOTS];
	ItemPointerData tips[TS_SLOT_MEMO_SLOTS];
	int			nroots = 0;
	ScanKeyData keys[2];
	IndexScanDesc scan;
	ItemPointer tid;

	ScanKeyInit(&keys[0], 1, BTEqualStrategyNumber, F_TEXTEQ, CStringGetTextDatum(name));
	ScanKeyInit(&keys[1], 2, BTEqualStrategyNumber, F_INT4EQ, Int32GetDatum(slot));
	for (int i = 0; i < nkeys; i++)
		keys[i].sk_collation = index->rd_indcollation[i];
	scan = ts_index_beginscan(rel, index, snapshot, nkeys);
	index_rescan(scan, keys, nkeys, NULL, 0);
	/* index_getnext_slot, keeping the TID the index gave: the chain's root */
	while ((tid = index_getnext_tid(scan, ForwardScanDirection)) != NULL)
	{
		ItemPointerData root = *tid;
		bool		should_free;
		HeapTuple	tuple;
		int			slot_no;

		if (!index_fetch_heap(scan, tuple_slot))
			continue;			/* no version the snapshot shows */
		tuple = ExecFetchSlotHeapTuple(tuple_slot, false, &should_free);
		slot_getallattrs(tuple_slot);
		ts_slot_rows_take(rows, slot, tuple_slot->tts_values, tuple_slot->tts_isnull, tuple);
		/* in primary key order, so slot i is the i-th row if all are there */
		slot_no = DatumGetInt32(tuple_slot->tts_values[ts_rels.counter_slot_no - 1]);
		if (slot_no == nroots && nroots < TS_SLOT_MEMO_SLOTS)
		{
			tips[nroots] = tuple->t_self;
			roots[nroots++] = root;
		}
		if (should_free)
			heap_freetuple(tuple);
	}
	index_endscan(scan);
	ExecDropSingleTupleTableSlot(tuple_slot);
	index_close(index, index_lockmode);

	if (rows->nrows > 0)
		ts_counter_slots_remember(key, rows->rows_slots);
	if (nkeys == 1 && rows->rows_slots > 1 && rows->nrows == rows->rows_slots &&
		nroots == rows->rows_slots)
	{
		TsSlotMemo *memo = ts_slot_memo_find(key);

		if (memo != NULL)
		{
			memcpy(memo->roots, roots, nroots * sizeof(ItemPointerData));
			memcpy(memo->tips, tips, nroots * sizeof(ItemPointerData));
			memo->nroots = nroots;
		}
	}
}

/*
 * Find the version of a row that the snapshot shows by walking its HOT chain
 * forward from *tip, a version of the row seen earlier, on the page in
 * buffer, which the caller holds share-locked.  On success *tuple is that
 * version and *tip its place.  False when the walk ends without one: the
 * tip was pruned, its line pointer now holds something else, or the version
 * the snapshot shows comes before the tip.
 *
 * A chain shows an MVCC snapshot at most one version, so the version found
 * is the one a walk from the root would find.  Each step checks that the
 * next version's xmin is the xmax of the one before, as heap_hot_search_buffer
 * does, so a link into a pointer that was pruned and reused ends the walk.
 * The tip itself may have been pruned and its pointer reused by another row;
 * the caller checks the key of the row found, and a row with the key that the
 * snapshot shows is the current one, as the key is unique.
 */
static bool
ts_slot_row_from_tip(Relation rel, Buffer buffer, ItemPointer tip, Snapshot snapshot,
					 HeapTuple tuple)
{
	Page		page = BufferGetPage(buffer);
	OffsetNumber offnum = ItemPointerGetOffsetNumber(tip);
	TransactionId prior_xmax = InvalidTransactionId;

	for (;;)
	{
		ItemId		lp;

		if (offnum < FirstOffsetNumber || offnum > PageGetMaxOffsetNumber(page))
			return false;
		lp = PageGetItemId(page, offnum);
		if (!ItemIdIsNormal(lp))
			return false;
		tuple->t_data = (HeapTupleHeader) PageGetItem(page, lp);
		tuple->t_len = ItemIdGetLength(lp);
		tuple->t_tableOid = RelationGetRelid(rel);
		ItemPointerSet(&tuple->t_self, BufferGetBlockNumber(buffer), offnum);
		if (TransactionIdIsValid(prior_xmax) &&
			!TransactionIdEquals(prior_xmax, HeapTupleHeaderGetXmin(tuple->t_data)))
			return false;
		if (HeapTupleSatisfiesVisibility(tuple, snapshot, buffer))
		{
			*tip = tuple->t_self;
			return true;
		}
		if (!HeapTupleIsHotUpdated(tuple))
			return false;
		offnum = ItemPointerGetOffsetNumber(&tuple->t_data->t_ctid);
		prior_xmax = HeapTupleHeaderGetUpdateXid(tuple->t_data);
	}
}

/*
 * Look for slot i's row in the HOT chain at its remembered root, on the
 * page in buffer (pinned), and count it into rows; false if it is not there.
 *
 * The row is looked for from its tip first.  A SERIALIZABLE transaction
 * walks from the root, through heap_hot_search_buffer, whose predicate locks
 * and conflict checks its reads need.
 */
typedef struct TsSlotLookup
{
	TupleDesc	desc;			/* counter_slot's */
	const char *name;			/* the counter's */
	size_t		name_len;
	int			slot;			/* the slot to update; -1: none */
	Snapshot	snapshot;
	bool		from_tips;		/* start from the tips (not under SERIALIZABLE) */
} TsSlotLookup;

/* inlined: it runs once per slot on every hot increment */
static pg_attribute_always_inline bool
ts_slot_row_at_root(Relation rel, Buffer buffer, BlockNumber block, TsSlotMemo *memo,
					int i, const TsSlotLookup *lookup, TsSlotRows *rows)
{
	ItemPointerData tid;
	HeapTupleData tuple;
	Datum		values[Natts_ts_counter_slot_max];
	bool		isnull[Natts_ts_counter_slot_max];
	text	   *row_name;
	bool		found;

	/*
	 * Prune the page of the row to update, as the index fetch of an UPDATE
	 * would, so that its next version finds room there (a HOT update).  Each
	 * page is pruned by its own slot's writers; the check costs a look at the
	 * transaction horizon, which is not worth paying for the pages that are
	 * only read.  The page may hold rows read before this one: they were
	 * copied or summed already.
	 */
	if (i == lookup->slot)
		heap_page_prune_opt(rel, buffer);
	LockBuffer(buffer, BUFFER_LOCK_SHARE);
	/* a HOT chain stays on its root's page, so the tip is on it too */
	if (lookup->from_tips &&
		ItemPointerGetBlockNumber(&memo->tips[i]) == block &&
		ts_slot_row_from_tip(rel, buffer, &memo->tips[i], lookup->snapshot, &tuple))
		found = true;
	else
	{
		tid = memo->roots[i];
		found = heap_hot_search_buffer(&tid, rel, buffer, lookup->snapshot, &tuple, NULL,
									   true);
		if (found)
			memo->tips[i] = tid;
	}
	if (found)
	{
		heap_deform_tuple(&tuple, lookup->desc, values, isnull);
		/* a name stored out of line is not read under the buffer lock */
		if (VARATT_IS_EXTERNAL(DatumGetPointer(values[ts_rels.counter_name - 1])) ||
			VARATT_IS_COMPRESSED(DatumGetPointer(values[ts_rels.counter_name - 1])))
			found = false;
		else
		{
			row_name = DatumGetTextPP(values[ts_rels.counter_name - 1]);
			found = VARSIZE_ANY_EXHDR(row_name) == lookup->name_len &&
				memcmp(VARDATA_ANY(row_name), lookup->name, lookup->name_len) == 0 &&
				DatumGetInt32(values[ts_rels.counter_slot_no - 1]) == i &&
				DatumGetInt32(values[ts_rels.counter_slots - 1]) == memo->nroots;
		}
		if (found)
			ts_slot_rows_take(rows, lookup->slot, values, isnull, &tuple);
	}
	LockBuffer(buffer, BUFFER_LOCK_UNLOCK);
	return found;
}

/*
 * Read every slot row of a hot counter from the roots remembered by
 * ts_slot_rows_by_index.  False if any of them is not where it was: rows
 * then holds nothing, and the caller asks the index.
 */
static bool
ts_slot_rows_at_roots(Relation rel, const char *name, uint64 key, int slot,
					  Snapshot snapshot, TsSlotRows *rows)
{
	TsSlotMemo *memo = ts_slot_memo_find(key);
	TsSlotLookup lookup = {RelationGetDescr(rel), name, strlen(name), slot, snapshot,
	!IsolationIsSerializable()};
	Buffer		buffer = InvalidBuffer;
	bool		found = memo != NULL && memo->nroots > 0;

	/* rows are unpacked into arrays of Natts_ts_counter_slot_max columns */
	if (!found || lookup.desc->natts > Natts_ts_counter_slot_max)
		return false;
	for (int i = 0; found && i < memo->nroots; i++)
	{
		BlockNumber block = ItemPointerGetBlockNumber(&memo->roots[i]);

		if (!BufferIsValid(buffer) || BufferGetBlockNumber(buffer) != block)
		{
			if (BufferIsValid(buffer))
				ReleaseBuffer(buffer);
			if (!ts_block_exists(rel, block))
			{
				buffer = InvalidBuffer;
				found = false;
				break;
			}
			buffer = ReadBuffer(rel, block);
		}
		found = ts_slot_row_at_root(rel, buffer, block, memo, i, &lookup, rows);
	}
	if (BufferIsValid(buffer))
		ReleaseBuffer(buffer);

	if (!found)
	{
		memo->nroots = 0;
		if (rows->own != NULL)
			heap_freetuple(rows->own);
		memset(rows, 0, sizeof(*rows));
	}
	return found;
}

/*
 * The sum of a counter's slots other than except_slot (-1: all of them), as
 * the snapshot shows them, read through the primary key; *overflowed says
 * the sum left the bigint range, *rows how many slot rows there were.  When
 * it finds every slot of a hot counter, it remembers their roots, so that
 * the next read of the counter can skip the index.
 */
static int64
ts_counter_scan_sum(const char *name, uint64 key, int except_slot, Snapshot snapshot,
					bool *overflowed, int *rows)
{
	Relation	rel;
	TsSlotRows	found = {0};

	ts_relaccess_lookup();
	rel = ts_relaccess_open(&ts_rels.counter_slot, AccessShareLock);
	ts_slot_rows_by_index(rel, name, key, except_slot, 1, AccessShareLock, snapshot, &found);
	table_close(rel, AccessShareLock);
	if (found.own != NULL)
		heap_freetuple(found.own);
	*overflowed = found.others_overflowed;
	*rows = found.nrows;
	return found.others;
}

/*
 * The sum of a counter's slots other than except_slot, as the snapshot shows
 * them; *overflowed says the sum left the bigint range.
 */
int64
ts_counter_sum_others(const char *name, uint64 key, int except_slot, Snapshot snapshot,
					  bool *overflowed)
{
	int			rows;

	return ts_counter_scan_sum(name, key, except_slot, snapshot, overflowed, &rows);
}

/*
 * A counter's value, the sum of all its slots, as the snapshot shows it;
 * false if there is no such counter.  *overflowed says the sum left the
 * bigint range.  For counter_get, the one read that every hot counter's
 * readers share.
 *
 * A hot counter is read from the roots of its slot rows when they are
 * remembered, as a hot increment reads it, but only with a snapshot of the
 * latest state.  Under "repeatable read" and "serializable" the index scan
 * stays: its predicate locks on the index are what let a SERIALIZABLE
 * transaction's reads conflict with a concurrent creation of the counter.
 */
bool
ts_counter_sum(const char *name, uint64 key, Snapshot snapshot, int64 *value,
			   bool *overflowed)
{
	int			rows;

	ts_relaccess_lookup();
	if (ts_policy_uses_latest() && ts_counter_slots_remembered(key) > 1)
	{
		TsSlotRows	found = {0};
		Relation	rel = ts_relaccess_open(&ts_rels.counter_slot, AccessShareLock);
		bool		at_roots = ts_slot_rows_at_roots(rel, name, key, -1, snapshot, &found);

		table_close(rel, AccessShareLock);
		if (at_roots)
		{
			*value = found.others;
			*overflowed = found.others_overflowed;
			return true;
		}
	}
	*value = ts_counter_scan_sum(name, key, -1, snapshot, overflowed, &rows);
	return rows > 0;
}

/*
 * Who holds a counter through its rows: the transaction in progress that
 * wrote one of its slot rows, or inserted them; invalid if nobody.  The
 * caller holds the counter's lock.
 */
TransactionId
ts_counter_writer(const char *name)
{
	Relation	rel;
	Relation	index;
	TupleTableSlot *slot;
	IndexScanDesc scan;
	ScanKeyData keys[2];
	Snapshot	latest = ts_latest_snapshot();
	TransactionId writer = InvalidTransactionId;
	bool		any = false;

	rel = ts_relaccess_open(&ts_rels.counter_slot, AccessShareLock);
	index = index_open(ts_rels.counter_slot_by_key, AccessShareLock);
	slot = table_slot_create(rel, NULL);
	ScanKeyInit(&keys[0], 1, BTEqualStrategyNumber, F_TEXTEQ, CStringGetTextDatum(name));
	keys[0].sk_collation = index->rd_indcollation[0];
	scan = ts_index_beginscan(rel, index, latest, 1);
	index_rescan(scan, keys, 1, NULL, 0);
	while (!TransactionIdIsValid(writer) &&
		   index_getnext_slot(scan, ForwardScanDirection, slot))
	{
		bool		should_free;
		HeapTuple	tuple = ExecFetchSlotHeapTuple(slot, false, &should_free);

		any = true;
		writer = ts_tuple_writer(tuple->t_data, latest);
		if (should_free)
			heap_freetuple(tuple);
	}
	index_endscan(scan);
	ExecDropSingleTupleTableSlot(slot);
	index_close(index, AccessShareLock);
	table_close(rel, AccessShareLock);
	ts_policy_release(latest);

	if (!any)
	{
		ScanKeyInit(&keys[0], 1, BTEqualStrategyNumber, F_TEXTEQ, CStringGetTextDatum(name));
		ScanKeyInit(&keys[1], 2, BTEqualStrategyNumber, F_INT4EQ, Int32GetDatum(0));
		writer = ts_relaccess_inserter(&ts_rels.counter_slot, &ts_rels.counter_slot_by_key,
									   keys, 2);
	}
	return writer;
}

/*
 * Write a slot's row anew with its value set to slot_value, its version
 * counted up and its time of update now.
 */
static void
ts_slot_write(Relation rel, const TsSlotRows *rows, int64 slot_value)
{
	Datum		values[TS_DIRECT_NATTS_MAX];
	bool		replace[TS_DIRECT_NATTS_MAX] = {false};

	values[ts_rels.counter_value - 1] = Int64GetDatum(slot_value);
	values[ts_rels.counter_version - 1] = Int64GetDatum(rows->own_version + 1);
	values[ts_rels.counter_updated_at - 1] = TimestampTzGetDatum(GetCurrentTimestamp());
	replace[ts_rels.counter_value - 1] = true;
	replace[ts_rels.counter_version - 1] = true;
	replace[ts_rels.counter_updated_at - 1] = true;

	/*
	 * Under the caller's lock nobody else writes this row (a writer that
	 * bypasses turnstile's functions was sent to SQL by the caller).
	 */
	ts_relaccess_update_row(rel, rows->own, values, replace);
}

/*
 * Whether the slot row read can be written directly: TS_SLOT_ADDED if so.
 */
static TsSlotAdd
ts_slot_writable(Relation rel, const TsSlotRows *rows, Snapshot snapshot,
				 TsSlotAdded *added)
{
	/*
	 * Under "repeatable read" the rows were read with the caller's snapshot,
	 * which the caller compared with the latest state.  Make sure all the
	 * same that the row to update is its slot's latest version, so that a
	 * change the comparison missed gives 40001, not heap_update's internal
	 * "tuple concurrently updated".
	 */
	if (!ts_policy_uses_latest() && !ts_relaccess_row_is_latest(rel, &rows->own->t_self))
		return TS_SLOT_CHANGED;

	/*
	 * The version read is the latest committed one.  If a transaction still
	 * in progress updated it (an increment whose call has returned: the row
	 * holds the key now, see keylock.c; or a role writing the table
	 * directly), CatalogTupleUpdate would wait for it and then fail with an
	 * internal "tuple concurrently updated": tell the caller whom to wait
	 * for instead, and it reads again afterwards.
	 */
	added->writer = ts_tuple_writer(rows->own->t_data, snapshot);
	if (TransactionIdIsValid(added->writer))
		return TS_SLOT_BUSY;
	/* lockers this path does not expect: let SQL sort them out */
	if (rows->own->t_data->t_infomask & HEAP_XMAX_IS_MULTI)
		return TS_SLOT_NO_DIRECT_PATH;
	return TS_SLOT_ADDED;
}

/*
 * Add delta to one slot of a counter, by direct heap and index access.  The
 * caller holds the lock that makes it the slot's only writer (keylock.c) and
 * passes the snapshot the isolation policy names, taken after that lock; so
 * the row this reads is the slot's latest version and the update cannot meet
 * a concurrent one.  expected_slots is the slot count the caller locked for:
 * for a plain counter one index probe finds the row; for a hot counter one
 * read of all its slots finds the row and sums the others.
 *
 * TS_SLOT_CHANGED means that under "repeatable read" the row was changed
 * after the caller's snapshot.  TS_SLOT_NOT_ADDED means no row for that
 * slot (the counter is missing or was created anew with fewer slots), a
 * counter that is hot where a plain one was expected or the reverse
 * (added->slots tells the actual count), or a slot value that would leave
 * the bigint range or the slot's share of the counter's bounds (only the
 * exclusive path can tell whether the counter as a whole has room: it sees
 * every slot, and deals the room out again).  Nothing was written then,
 * and the caller chooses other locks.  On TS_SLOT_ADDED, *added tells the
 * slot's new value, the counter's actual slot count, and, if the read
 * covered every slot, the sum of the others.
 */
TsSlotAdd
ts_counter_slot_add(const char *name, uint64 key, int slot, int expected_slots,
					int64 delta, Snapshot snapshot, TsSlotAdded *added)
{
	Relation	rel;
	TsSlotRows	rows = {0};
	TsSlotAdd	result;

	ts_relaccess_lookup();
	rel = ts_relaccess_open(&ts_rels.counter_slot, RowExclusiveLock);
	if (!ts_relaccess_writable(rel, 1, &ts_rels.counter_slot_by_key) ||
		RelationGetDescr(rel)->natts > Natts_ts_counter_slot_max)
	{
		table_close(rel, RowExclusiveLock);
		return TS_SLOT_NO_DIRECT_PATH;
	}

	memset(added, 0, sizeof(*added));
	added->others_known = expected_slots > 1;
	if (expected_slots == 1)
		ts_slot_rows_by_index(rel, name, key, slot, 2, RowExclusiveLock, snapshot, &rows);
	else if (!ts_slot_rows_at_roots(rel, name, key, slot, snapshot, &rows))
		ts_slot_rows_by_index(rel, name, key, slot, 1, RowExclusiveLock, snapshot, &rows);
	added->slots = rows.slots;
	added->others = rows.others;
	added->others_overflowed = rows.others_overflowed;

	/* a lock chosen for a plain counter does not fit a hot one, or back */
	if (rows.own == NULL || (rows.slots > 1) != (expected_slots > 1) ||
		pg_add_s64_overflow(rows.own_value, delta, &added->slot_value) ||
		added->slot_value < rows.own_lower || added->slot_value > rows.own_upper)
		result = TS_SLOT_NOT_ADDED;
	else
		result = ts_slot_writable(rel, &rows, snapshot, added);
	if (result == TS_SLOT_ADDED)
		ts_slot_write(rel, &rows, added->slot_value);

	if (rows.own != NULL)
		heap_freetuple(rows.own);

	/*
	 * A written row keeps the table's lock to the end of the transaction, as
	 * an UPDATE's does: REINDEX CONCURRENTLY and CREATE INDEX CONCURRENTLY
	 * wait only for transactions that hold it, and would otherwise build an
	 * index without a row version this transaction may still commit.
	 */
	table_close(rel, result == TS_SLOT_ADDED ? NoLock : RowExclusiveLock);
	return result;
}

