/*-------------------------------------------------------------------------
 *
 * fastpath.c
 *	  Reads on the hot paths, by direct index access.
 *
 * Two reads happen on almost every call and are worth doing without SPI:
 *
 * - the fresh credential hit.  Most credential_get calls find a fresh
 *   credential and return it without a lock.  Through SPI that is a whole
 *   query per call, with executor start-up and a join; here it is two index
 *   lookups: the realm by name, then the user's credential by primary key,
 *   both with the snapshot the isolation policy names.  Anything that is not
 *   a fresh hit (no realm, no credential, invalidated, expired, inside the
 *   refresh-ahead window) goes to the full path in credential.c, which
 *   decides again with SPI; so this file only has to be right about
 *   "fresh", never about what to do otherwise.
 *
 * - who may use a realm: its grants, checked on every credential call;
 *
 * - a counter's slot count, which an increment needs before it can choose
 *   its locks: one probe of the counter's slot 0 row;
 *
 * - a counter's value for counter_get: the sum of its slots, read from where
 *   a hot counter's slot rows were last time (TsSlotMemo);
 *
 * - the increment itself: one slot row updated in place, and, for a hot
 *   counter, the sum of its other slots read in the same index scan, which
 *   the increment adds to its own slot's new value to return the total.
 *   Through SPI, an UPDATE's executor start-up and its snapshot and portal
 *   bookkeeping cost more than the change itself (measured with perf; see
 *   bench/README.md).  The write goes through
 *   CatalogTupleUpdate: despite its name it is the heap update plus index
 *   maintenance for a table whose indexes are plain columns, and, unlike
 *   heap_update, it is called the same way on every supported PostgreSQL
 *   version.  The table has no triggers and only its primary key, and the
 *   write path checks that before every write; if someone added a trigger
 *   or an index, the increment goes through SQL instead
 *   (TS_SLOT_NO_DIRECT_PATH), so that they fire and are maintained.
 *
 * The relation and index OIDs are looked up once per backend and forgotten
 * on any relcache invalidation of them (DROP EXTENSION, a rewrite).  The
 * tables are the extension's own, reached without permission checks in the
 * same way as the store reaches them as their owner.
 *
 *-------------------------------------------------------------------------
 */
#include "turnstile.h"

#include "access/genam.h"
#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/multixact.h"
#include "access/xact.h"
#include "access/stratnum.h"
#include "access/table.h"
#include "access/subtrans.h"
#include "access/tableam.h"
#include "catalog/indexing.h"
#include "catalog/namespace.h"
#include "utils/syscache.h"
#include "catalog/pg_type.h"
#include "catalog/pg_index.h"
#include "catalog/pg_namespace.h"
#include "catalog/pg_am.h"
#include "catalog/pg_class.h"
#include "common/int.h"
#include "executor/executor.h"
#include "executor/tuptable.h"
#include "mb/pg_wchar.h"
#include "storage/bufmgr.h"
#include "storage/lmgr.h"
#include "miscadmin.h"
#include "storage/procarray.h"
#include "funcapi.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/fmgroids.h"
#include "utils/hsearch.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/timestamp.h"

/*
 * index_beginscan for every supported version: PostgreSQL 18 added an
 * IndexScanInstrumentation argument, which the fast path does not use.
 */
static inline IndexScanDesc
ts_index_beginscan(Relation rel, Relation index, Snapshot snapshot, int nkeys)
{
#if PG_VERSION_NUM >= 180000
	return index_beginscan(rel, index, snapshot, NULL, nkeys, 0);
#else
	return index_beginscan(rel, index, snapshot, nkeys, 0);
#endif
}

/* The relations the fast path reads, and the columns it needs. */
typedef struct TsFastRels
{
	Oid			realm;
	Oid			realm_by_name;	/* unique index on realm(name) */
	Oid			credential;
	Oid			credential_by_key;	/* primary key (realm_id, user_id) */
	Oid			counter_slot;
	Oid			counter_slot_by_key;	/* primary key (name, slot) */
	Oid			realm_grant;
	Oid			realm_grant_by_key; /* primary key (realm_id, grantee) */
	AttrNumber	realm_id;
	AttrNumber	realm_name;
	AttrNumber	realm_ttl;
	AttrNumber	realm_refresh_ahead;
	AttrNumber	realm_registered_by;
	AttrNumber	grant_grantee;
	AttrNumber	cred_realm_id;
	AttrNumber	cred_user_id;
	AttrNumber	cred_credential;
	AttrNumber	cred_invalidated;
	AttrNumber	cred_validated_at;
	AttrNumber	counter_name;
	AttrNumber	counter_slots;
	AttrNumber	counter_slot_no;
	AttrNumber	counter_value;
	AttrNumber	counter_version;
	AttrNumber	counter_updated_at;
} TsFastRels;

static TsFastRels ts_rels;
static bool ts_rels_valid = false;
static bool ts_rels_callback_registered = false;

/*
 * Where the row of the realm last looked up by name was.  A row that the
 * snapshot shows at that place, under that name, is the realm's current row:
 * realm_set and realm_drop leave the version they replace invisible to every
 * later snapshot, and names are unique.  So the next lookup of that realm
 * fetches the row there and skips the index.  Forgotten with the relation
 * OIDs, since a rewrite moves every row.
 */
static struct
{
	bool		valid;
	ItemPointerData tid;
	char		name[TURNSTILE_NAME_MAX_CHARS * MAX_MULTIBYTE_CHAR_LEN + 1];
}			ts_realm_memo;

/*
 * In the same way, where the credential rows of recent fresh hits were, by
 * realm id and user id (the credential table's primary key).  Kept in
 * TopMemoryContext because it outlives transactions; emptied when it reaches
 * TS_CREDENTIAL_MEMO_MAX entries, so it never holds more than about 100 kB.
 */
#define TS_CREDENTIAL_MEMO_MAX	2048

typedef struct TsCredentialKey
{
	int32		realm_id;
	int64		user_id;
} TsCredentialKey;

typedef struct TsCredentialMemo
{
	TsCredentialKey key;
	ItemPointerData tid;
} TsCredentialMemo;

static HTAB *ts_credential_memo = NULL;
static bool ts_credential_memo_stale = false;	/* empty it before use */

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

static void
ts_fastpath_forget(Datum arg, Oid relid)
{
	if (relid == InvalidOid || relid == ts_rels.realm || relid == ts_rels.credential ||
		relid == ts_rels.realm_by_name || relid == ts_rels.credential_by_key ||
		relid == ts_rels.counter_slot || relid == ts_rels.counter_slot_by_key ||
		relid == ts_rels.realm_grant || relid == ts_rels.realm_grant_by_key)
	{
		ts_rels_valid = false;
		ts_realm_memo.valid = false;
		ts_credential_memo_stale = true;
		memset(ts_slot_memo, 0, sizeof(ts_slot_memo));
		ts_slot_memo_filled = 0;
		ts_slot_memo_next = 0;
	}
}

/*
 * The role the tables belong to: the owner of the turnstile schema, which
 * CREATE EXTENSION created together with them.  Every call needs it, so it is
 * remembered per backend and forgotten when any schema changes (ALTER
 * EXTENSION ... OWNER, DROP and CREATE EXTENSION).
 */
static Oid	ts_owner_cached = InvalidOid;
static bool ts_owner_callback_registered = false;

static void
ts_forget_tables_owner(Datum arg, int cacheid, uint32 hashvalue)
{
	ts_owner_cached = InvalidOid;
}

Oid
ts_tables_owner(void)
{
	Oid			nspid;
	HeapTuple	tuple;

	if (OidIsValid(ts_owner_cached))
		return ts_owner_cached;

	if (!ts_owner_callback_registered)
	{
		CacheRegisterSyscacheCallback(NAMESPACEOID, ts_forget_tables_owner, (Datum) 0);
		ts_owner_callback_registered = true;
	}
	nspid = get_namespace_oid("turnstile", false);
	tuple = SearchSysCache1(NAMESPACEOID, ObjectIdGetDatum(nspid));
	if (!HeapTupleIsValid(tuple))
		elog(ERROR, "cache lookup failed for schema %u", nspid);
	ts_owner_cached = ((Form_pg_namespace) GETSTRUCT(tuple))->nspowner;
	ReleaseSysCache(tuple);
	return ts_owner_cached;
}

/*
 * Raise the error for an extension table that is not as the extension
 * created it.
 */
static void
ts_fastpath_altered(const char *relname, const char *detail)
{
	ereport(ERROR,
			(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
			 errmsg("pg_turnstile relation turnstile.%s was altered", relname),
			 errdetail_internal("%s", detail),
			 errhint("Its tables must stay as the extension created them; reinstall the extension.")));
}

static Oid
ts_fastpath_relid(const char *name, Oid nspid)
{
	Oid			relid = get_relname_relid(name, nspid);

	if (!OidIsValid(relid))
		ts_fastpath_altered(name, "It is missing.");
	return relid;
}

/*
 * A column's number, checked to be of the type the extension created it
 * with: every path reads the column's Datums as that type, so a column
 * whose type was changed (ALTER COLUMN ... TYPE numeric) would be read as
 * garbage.  The SPI paths read the same columns, and every call checks
 * here first (ts_store_open), so one check covers both.
 */
static AttrNumber
ts_fastpath_attnum(Oid relid, const char *column, Oid type)
{
	HeapTuple	tuple = SearchSysCacheAttName(relid, column);
	Form_pg_attribute att;
	AttrNumber	attnum;
	Oid			atttype;

	if (!HeapTupleIsValid(tuple))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("pg_turnstile table %s has no column \"%s\"",
						get_rel_name(relid), column),
				 errhint("Its tables must stay as the extension created them; reinstall the extension.")));
	att = (Form_pg_attribute) GETSTRUCT(tuple);
	attnum = att->attnum;
	atttype = att->atttypid;
	ReleaseSysCache(tuple);
	if (atttype != type)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("pg_turnstile table %s column \"%s\" has type %s, not %s",
						get_rel_name(relid), column, format_type_be(atttype),
						format_type_be(type)),
				 errhint("Its tables must stay as the extension created them; reinstall the extension.")));
	return attnum;
}

/*
 * Check that an index still is a plain index of the table on these columns
 * in this order: the scans build their keys for exactly those.
 */
static void
ts_fastpath_check_index(Oid indexid, Oid relid, int nkeys, const AttrNumber *attnums)
{
	HeapTuple	tuple = SearchSysCache1(INDEXRELID, ObjectIdGetDatum(indexid));
	Form_pg_index index;
	bool		fits;

	if (!HeapTupleIsValid(tuple))
		ts_fastpath_altered(get_rel_name(indexid), "It is not an index.");
	index = (Form_pg_index) GETSTRUCT(tuple);
	fits = index->indrelid == relid && index->indnkeyatts == nkeys &&
		index->indisunique && heap_attisnull(tuple, Anum_pg_index_indexprs, NULL) &&
		heap_attisnull(tuple, Anum_pg_index_indpred, NULL);
	for (int i = 0; fits && i < nkeys; i++)
		fits = index->indkey.values[i] == attnums[i];
	ReleaseSysCache(tuple);
	tuple = SearchSysCache1(RELOID, ObjectIdGetDatum(indexid));
	if (HeapTupleIsValid(tuple))
	{
		fits = fits && ((Form_pg_class) GETSTRUCT(tuple))->relam == BTREE_AM_OID;
		ReleaseSysCache(tuple);
	}
	if (!fits)
		ts_fastpath_altered(get_rel_name(indexid),
							"It is no longer the unique b-tree index the extension created.");
}

/*
 * Look up (once per backend, and again after any change to them) the
 * extension's tables and indexes, and check their shape: every column that
 * any path reads, with its type, and the indexes the fast paths scan.
 */
void
ts_fastpath_lookup_rels(void)
{
	Oid			nspid;
	TsFastRels	r;

	if (likely(ts_rels_valid))
		return;
	if (!ts_rels_callback_registered)
	{
		CacheRegisterRelcacheCallback(ts_fastpath_forget, (Datum) 0);
		ts_rels_callback_registered = true;
	}
	nspid = get_namespace_oid("turnstile", false);
	r.realm = ts_fastpath_relid("realm", nspid);
	r.realm_by_name = ts_fastpath_relid("realm_name_key", nspid);
	r.credential = ts_fastpath_relid("credential", nspid);
	r.credential_by_key = ts_fastpath_relid("credential_pkey", nspid);
	r.counter_slot = ts_fastpath_relid("counter_slot", nspid);
	r.counter_slot_by_key = ts_fastpath_relid("counter_slot_pkey", nspid);
	r.realm_grant = ts_fastpath_relid("realm_grant", nspid);
	r.realm_grant_by_key = ts_fastpath_relid("realm_grant_pkey", nspid);

	r.realm_id = ts_fastpath_attnum(r.realm, "realm_id", INT4OID);
	r.realm_name = ts_fastpath_attnum(r.realm, "name", TEXTOID);
	r.realm_ttl = ts_fastpath_attnum(r.realm, "ttl", INTERVALOID);
	r.realm_refresh_ahead = ts_fastpath_attnum(r.realm, "refresh_ahead", INTERVALOID);
	r.realm_registered_by = ts_fastpath_attnum(r.realm, "registered_by", REGROLEOID);
	(void) ts_fastpath_attnum(r.realm, "login", TEXTOID);
	(void) ts_fastpath_attnum(r.realm, "validate", TEXTOID);
	(void) ts_fastpath_attnum(r.realm, "retry_after", INTERVALOID);
	(void) ts_fastpath_attnum(r.realm, "propagation", TEXTOID);
	(void) ts_fastpath_attnum(r.realm, "search_path", TEXTOID);

	r.grant_grantee = ts_fastpath_attnum(r.realm_grant, "grantee", REGROLEOID);
	(void) ts_fastpath_attnum(r.realm_grant, "realm_id", INT4OID);

	r.cred_realm_id = ts_fastpath_attnum(r.credential, "realm_id", INT4OID);
	r.cred_user_id = ts_fastpath_attnum(r.credential, "user_id", INT8OID);
	r.cred_credential = ts_fastpath_attnum(r.credential, "credential", TEXTOID);
	r.cred_invalidated = ts_fastpath_attnum(r.credential, "invalidated", BOOLOID);
	r.cred_validated_at = ts_fastpath_attnum(r.credential, "validated_at", TIMESTAMPTZOID);
	(void) ts_fastpath_attnum(r.credential, "issued_at", TIMESTAMPTZOID);
	(void) ts_fastpath_attnum(r.credential, "logins", INT8OID);
	(void) ts_fastpath_attnum(r.credential, "validations", INT8OID);
	(void) ts_fastpath_attnum(r.credential, "failures", INT4OID);
	(void) ts_fastpath_attnum(r.credential, "last_error", TEXTOID);
	(void) ts_fastpath_attnum(r.credential, "last_sqlstate", TEXTOID);
	(void) ts_fastpath_attnum(r.credential, "failed_at", TIMESTAMPTZOID);
	(void) ts_fastpath_attnum(r.credential, "version", INT8OID);

	r.counter_name = ts_fastpath_attnum(r.counter_slot, "name", TEXTOID);
	r.counter_slots = ts_fastpath_attnum(r.counter_slot, "slots", INT4OID);
	r.counter_slot_no = ts_fastpath_attnum(r.counter_slot, "slot", INT4OID);
	r.counter_value = ts_fastpath_attnum(r.counter_slot, "value", INT8OID);
	r.counter_version = ts_fastpath_attnum(r.counter_slot, "version", INT8OID);
	r.counter_updated_at = ts_fastpath_attnum(r.counter_slot, "updated_at", TIMESTAMPTZOID);
	(void) ts_fastpath_attnum(r.counter_slot, "created_at", TIMESTAMPTZOID);

	ts_fastpath_check_index(r.realm_by_name, r.realm, 1,
							(AttrNumber[]) {r.realm_name});
	ts_fastpath_check_index(r.credential_by_key, r.credential, 2,
							(AttrNumber[]) {r.cred_realm_id, r.cred_user_id});
	ts_fastpath_check_index(r.counter_slot_by_key, r.counter_slot, 2,
							(AttrNumber[]) {r.counter_name, r.counter_slot_no});
	ts_fastpath_check_index(r.realm_grant_by_key, r.realm_grant, 2,
							(AttrNumber[]) {ts_fastpath_attnum(r.realm_grant, "realm_id", INT4OID),
							r.grant_grantee});
	ts_rels = r;
	ts_rels_valid = true;
}

/*
 * Open one of the extension's tables (relid points into ts_rels).  The OIDs
 * are remembered across transactions, so the table may have been dropped
 * since (DROP EXTENSION, perhaps followed by CREATE EXTENSION): lock it
 * first, then look whether it is still there and still the one remembered.
 * Taking the lock processed the invalidations of everything committed
 * before it, so if the table or one of its indexes changed, ts_rels is no
 * longer valid here, and the lookup is done again with the new OIDs.
 */
static Relation
ts_fastpath_open(const Oid *relid, LOCKMODE mode)
{
	for (int attempt = 0;; attempt++)
	{
		Oid			locked;

		ts_fastpath_lookup_rels();
		locked = *relid;
		LockRelationOid(locked, mode);

		/*
		 * Had the table been dropped or changed, taking the lock (or the
		 * lock this transaction held before) processed the invalidation
		 * that cleared ts_rels_valid; so while it is still valid, the table
		 * exists and is the one remembered, and opens as table_open would.
		 */
		if (ts_rels_valid)
			return table_open(locked, NoLock);
		UnlockRelationOid(locked, mode);
		if (attempt == 3)
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_IN_USE),
					 errmsg("pg_turnstile's tables are being dropped or changed"),
					 errhint("Retry when the DROP EXTENSION or ALTER TABLE has ended.")));
	}
}

/*
 * Fetch the one row of a unique index lookup into slot; false if none.
 */
static bool
ts_fastpath_fetch(Relation rel, Oid indexid, ScanKey keys, int nkeys,
				  Snapshot snapshot, TupleTableSlot *slot)
{
	Relation	index = index_open(indexid, AccessShareLock);
	IndexScanDesc scan;
	bool		found;

	for (int i = 0; i < nkeys; i++)
		keys[i].sk_collation = index->rd_indcollation[i];
	scan = ts_index_beginscan(rel, index, snapshot, nkeys);
	index_rescan(scan, keys, nkeys, NULL, 0);
	found = index_getnext_slot(scan, ForwardScanDirection, slot);
	if (found)
		slot_getallattrs(slot);
	index_endscan(scan);
	index_close(index, AccessShareLock);
	return found;
}

/*
 * Does the table still have this block?  A vacuum may have truncated the
 * page of a remembered row away, and reading past the end is an error.
 *
 * Asking the kernel for the table's size costs a system call, on every
 * increment of a hot counter and every fresh credential hit; the size that
 * this backend learnt last time answers as well whenever the block lies
 * below it, because no block below it can have gone since.  A truncation
 * holds the table's AccessExclusiveLock, which conflicts with the lock the
 * caller holds, and sends an invalidation at once, before it lets that lock
 * go; the caller's lock acquisition processed the invalidation, which closed
 * the table's storage handle and dropped the size it knew.  Blocks added
 * since are not in it, and are checked with the system call.  So the caller
 * must hold a lock on the table, as every caller here does.
 */
static bool
ts_block_exists(Relation rel, BlockNumber block)
{
	BlockNumber known = RelationGetSmgr(rel)->smgr_cached_nblocks[MAIN_FORKNUM];

	if (known != InvalidBlockNumber && block < known)
		return true;
	return block < RelationGetNumberOfBlocks(rel);
}

/*
 * Fetch the row version at tid into slot if the snapshot shows it; false if
 * it does not, or if the page is gone.
 */
static bool
ts_fastpath_fetch_at(Relation rel, ItemPointer tid, Snapshot snapshot,
					 TupleTableSlot *slot)
{
	if (!ItemPointerIsValid(tid) ||
		!ts_block_exists(rel, ItemPointerGetBlockNumber(tid)) ||
		!table_tuple_fetch_row_version(rel, tid, snapshot, slot))
		return false;
	slot_getallattrs(slot);
	return true;
}

/*
 * Fetch the realm's row from where it was last time (ts_realm_memo) into
 * slot; false if it is not there any more.
 */
static bool
ts_fastpath_realm_at_memo(Relation realm, const char *realm_name, Snapshot snapshot,
						  TupleTableSlot *slot)
{
	text	   *name;

	if (!ts_realm_memo.valid || strcmp(ts_realm_memo.name, realm_name) != 0 ||
		!ts_fastpath_fetch_at(realm, &ts_realm_memo.tid, snapshot, slot))
		return false;
	name = DatumGetTextPP(slot->tts_values[ts_rels.realm_name - 1]);
	return VARSIZE_ANY_EXHDR(name) == strlen(realm_name) &&
		memcmp(VARDATA_ANY(name), realm_name, VARSIZE_ANY_EXHDR(name)) == 0;
}

/*
 * Look a realm up by name: its id, ttl and refresh_ahead (copied, since the
 * tuple goes with its buffer pin).  False if there is no such realm.
 */
static bool
ts_fastpath_realm(const char *realm_name, Snapshot snapshot, int32 *realm_id,
				  Oid *registered_by, Interval **ttl, Interval **refresh_ahead)
{
	Relation	realm = ts_fastpath_open(&ts_rels.realm, AccessShareLock);
	TupleTableSlot *slot = table_slot_create(realm, NULL);
	ScanKeyData key;
	bool		found;

	found = ts_fastpath_realm_at_memo(realm, realm_name, snapshot, slot);
	if (!found)
	{
		ScanKeyInit(&key, 1, BTEqualStrategyNumber, F_TEXTEQ,
					CStringGetTextDatum(realm_name));
		found = ts_fastpath_fetch(realm, ts_rels.realm_by_name, &key, 1, snapshot, slot);
		ts_realm_memo.valid = found && strlen(realm_name) < sizeof(ts_realm_memo.name);
		if (ts_realm_memo.valid)
		{
			ts_realm_memo.tid = slot->tts_tid;
			strcpy(ts_realm_memo.name, realm_name);
		}
	}
	if (found)
	{
		*realm_id = DatumGetInt32(slot->tts_values[ts_rels.realm_id - 1]);
		*registered_by = DatumGetObjectId(slot->tts_values[ts_rels.realm_registered_by - 1]);
		*ttl = DatumGetIntervalP(datumCopy(slot->tts_values[ts_rels.realm_ttl - 1],
										   false, sizeof(Interval)));
		*refresh_ahead =
			DatumGetIntervalP(datumCopy(slot->tts_values[ts_rels.realm_refresh_ahead - 1],
										false, sizeof(Interval)));
	}
	ExecDropSingleTupleTableSlot(slot);
	table_close(realm, AccessShareLock);
	return found;
}

/*
 * The memo entry for a user's credential row, created if absent; the memo
 * is made, or emptied, first when needed.
 */
static TsCredentialMemo *
ts_credential_memo_entry(int32 realm_id, int64 user_id, bool *found)
{
	TsCredentialKey key;
	TsCredentialMemo *memo;

	if (ts_credential_memo != NULL &&
		(ts_credential_memo_stale ||
		 hash_get_num_entries(ts_credential_memo) >= TS_CREDENTIAL_MEMO_MAX))
	{
		hash_destroy(ts_credential_memo);
		ts_credential_memo = NULL;
	}
	if (ts_credential_memo == NULL)
	{
		HASHCTL		ctl;

		ctl.keysize = sizeof(TsCredentialKey);
		ctl.entrysize = sizeof(TsCredentialMemo);
		ctl.hcxt = TopMemoryContext;
		ts_credential_memo = hash_create("pg_turnstile credential rows", 256, &ctl,
										 HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
		ts_credential_memo_stale = false;
	}

	memset(&key, 0, sizeof(key));	/* the padding is hashed too */
	key.realm_id = realm_id;
	key.user_id = user_id;
	memo = hash_search(ts_credential_memo, &key, HASH_ENTER, found);
	if (!*found)
		ItemPointerSetInvalid(&memo->tid);
	return memo;
}

/*
 * Fetch a user's credential row into slot: from where it was last time if
 * the snapshot still shows it there (see ts_realm_memo for why that is the
 * current row), else by primary key.  False if there is none.
 */
static bool
ts_fastpath_credential_row(Relation credential, int32 realm_id, int64 user_id,
						   Snapshot snapshot, TupleTableSlot *slot)
{
	bool		remembered;
	TsCredentialMemo *memo = ts_credential_memo_entry(realm_id, user_id, &remembered);
	ScanKeyData keys[2];

	if (remembered && ts_fastpath_fetch_at(credential, &memo->tid, snapshot, slot) &&
		DatumGetInt32(slot->tts_values[ts_rels.cred_realm_id - 1]) == realm_id &&
		DatumGetInt64(slot->tts_values[ts_rels.cred_user_id - 1]) == user_id)
		return true;

	ScanKeyInit(&keys[0], 1, BTEqualStrategyNumber, F_INT4EQ, Int32GetDatum(realm_id));
	ScanKeyInit(&keys[1], 2, BTEqualStrategyNumber, F_INT8EQ, Int64GetDatum(user_id));
	if (!ts_fastpath_fetch(credential, ts_rels.credential_by_key, keys, 2, snapshot, slot))
	{
		hash_search(ts_credential_memo, &memo->key, HASH_REMOVE, NULL);
		return false;
	}
	memo->tid = slot->tts_tid;
	return true;
}

/*
 * A user's credential in a realm if it is valid and fresh, else NULL.
 */
static text *
ts_fastpath_credential(int32 realm_id, int64 user_id, Interval *ttl,
					   Interval *refresh_ahead, Snapshot snapshot)
{
	Relation	credential = ts_fastpath_open(&ts_rels.credential, AccessShareLock);
	TupleTableSlot *slot = table_slot_create(credential, NULL);
	text	   *result = NULL;

	if (ts_fastpath_credential_row(credential, realm_id, user_id, snapshot, slot) &&
		!slot->tts_isnull[ts_rels.cred_credential - 1] &&
		!DatumGetBool(slot->tts_values[ts_rels.cred_invalidated - 1]) &&
		!slot->tts_isnull[ts_rels.cred_validated_at - 1])
	{
		/* fresh while validated_at + ttl - refresh_ahead is still ahead */
		Datum		fresh_until;

		fresh_until = DirectFunctionCall2(timestamptz_pl_interval,
										  slot->tts_values[ts_rels.cred_validated_at - 1],
										  IntervalPGetDatum(ttl));
		fresh_until = DirectFunctionCall2(timestamptz_mi_interval, fresh_until,
										  IntervalPGetDatum(refresh_ahead));
		if (DatumGetTimestampTz(fresh_until) > GetCurrentTimestamp())
			result = DatumGetTextPCopy(slot->tts_values[ts_rels.cred_credential - 1]);
	}
	ExecDropSingleTupleTableSlot(slot);
	table_close(credential, AccessShareLock);
	return result;
}

/*
 * The user's credential if it is fresh (valid and before its refresh-ahead
 * window) as the policy's snapshot shows it, or NULL.
 */
text *
ts_credential_fresh_hit(const char *realm_name, int64 user_id)
{
	Snapshot	snapshot;
	int32		realm_id;
	Oid			registered_by;
	Interval   *ttl;
	Interval   *refresh_ahead;
	text	   *result = NULL;

	/*
	 * Under "repeatable read" a credential fresh in the caller's snapshot may
	 * have been replaced since; the full path compares it with the latest
	 * state and raises 40001 then.  This path serves "read committed".
	 */
	if (!ts_policy_uses_latest())
		return NULL;
	ts_fastpath_lookup_rels();
	snapshot = ts_policy_snapshot();
	/* a caller without access gets its error from the full path */
	if (ts_fastpath_realm(realm_name, snapshot, &realm_id, &registered_by, &ttl,
						  &refresh_ahead) &&
		ts_realm_accessible(GetUserId(), realm_id, registered_by, snapshot))
		result = ts_fastpath_credential(realm_id, user_id, ttl, refresh_ahead, snapshot);
	ts_policy_release(snapshot);
	return result;
}

/*
 * May a user use a realm's credentials?  Superusers and whoever has the
 * privileges of the extension's owner or of the realm's registering role
 * may; others only through a role the realm was granted to (realm_grant).
 * Role membership is answered from the backend's cache.
 */
bool
ts_realm_accessible(Oid user, int32 realm_id, Oid registered_by, Snapshot snapshot)
{
	Relation	rel;
	Relation	index;
	IndexScanDesc scan;
	TupleTableSlot *slot;
	ScanKeyData key;
	bool		allowed;

	if (has_privs_of_role(user, ts_tables_owner()) || has_privs_of_role(user, registered_by))
		return true;

	ts_fastpath_lookup_rels();
	rel = ts_fastpath_open(&ts_rels.realm_grant, AccessShareLock);
	index = index_open(ts_rels.realm_grant_by_key, AccessShareLock);
	slot = table_slot_create(rel, NULL);
	ScanKeyInit(&key, 1, BTEqualStrategyNumber, F_INT4EQ, Int32GetDatum(realm_id));
	scan = ts_index_beginscan(rel, index, snapshot, 1);
	index_rescan(scan, &key, 1, NULL, 0);
	allowed = false;
	while (!allowed && index_getnext_slot(scan, ForwardScanDirection, slot))
	{
		slot_getallattrs(slot);
		allowed = has_privs_of_role(user,
									DatumGetObjectId(slot->tts_values[ts_rels.grant_grantee - 1]));
	}
	index_endscan(scan);
	ExecDropSingleTupleTableSlot(slot);
	index_close(index, AccessShareLock);
	table_close(rel, AccessShareLock);
	return allowed;
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

	ts_fastpath_lookup_rels();
	snapshot = ts_latest_snapshot();
	rel = ts_fastpath_open(&ts_rels.counter_slot, AccessShareLock);
	slot = table_slot_create(rel, NULL);
	ScanKeyInit(&keys[0], 1, BTEqualStrategyNumber, F_TEXTEQ, CStringGetTextDatum(name));
	ScanKeyInit(&keys[1], 2, BTEqualStrategyNumber, F_INT4EQ, Int32GetDatum(0));
	if (ts_fastpath_fetch(rel, ts_rels.counter_slot_by_key, keys, 2, snapshot, slot))
		slots = DatumGetInt32(slot->tts_values[ts_rels.counter_slots - 1]);
	ExecDropSingleTupleTableSlot(slot);
	table_close(rel, AccessShareLock);
	ts_policy_release(snapshot);
	return slots;
}

/*
 * May the direct write path update counter_slot?  Only while the table is as
 * the extension created it: no triggers, rules, row security, CHECK
 * constraints or generated columns (the executor applies them, a direct
 * update would not) and no index but the primary key (CatalogTupleUpdate
 * maintains plain-column indexes only).
 */
static bool
ts_counter_slot_is_plain(Relation rel)
{
	List	   *indexes;
	bool		plain;

	TupleConstr *constr = RelationGetDescr(rel)->constr;

	if (rel->trigdesc != NULL || rel->rd_rules != NULL || rel->rd_rel->relrowsecurity ||
		(constr != NULL && (constr->num_check > 0 || constr->has_generated_stored)))
		return false;
	indexes = RelationGetIndexList(rel);
	plain = list_length(indexes) == 1 &&
		linitial_oid(indexes) == ts_rels.counter_slot_by_key;
	list_free(indexes);
	return plain;
}

/*
 * What one read of a counter's slot rows found.
 */
typedef struct TsSlotRows
{
	HeapTuple	own;			/* a copy of the row of the slot to update */
	int64		own_value;
	int64		own_version;
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
 * Count one slot row, given its columns, into rows: the row of the slot to
 * update is copied, the others are summed.
 */
static void
ts_slot_rows_take(TsSlotRows *rows, int slot, Datum *values, HeapTuple tuple)
{
	int64		value = DatumGetInt64(values[ts_rels.counter_value - 1]);

	rows->nrows++;
	rows->rows_slots = DatumGetInt32(values[ts_rels.counter_slots - 1]);
	if (DatumGetInt32(values[ts_rels.counter_slot_no - 1]) == slot)
	{
		rows->own = heap_copytuple(tuple);
		rows->own_value = value;
		rows->own_version = DatumGetInt64(values[ts_rels.counter_version - 1]);
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
		ts_slot_rows_take(rows, slot, tuple_slot->tts_values, tuple);
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
 * Read every slot row of a hot counter from the roots remembered by
 * ts_slot_rows_by_index.  False if any of them is not where it was: rows
 * then holds nothing, and the caller asks the index.
 *
 * Each row is looked for from its tip first.  A SERIALIZABLE transaction
 * walks from the root, through heap_hot_search_buffer, whose predicate locks
 * and conflict checks its reads need.
 */
static bool
ts_slot_rows_at_roots(Relation rel, const char *name, uint64 key, int slot,
					  Snapshot snapshot, TsSlotRows *rows)
{
	TsSlotMemo *memo = ts_slot_memo_find(key);
	TupleDesc	desc = RelationGetDescr(rel);
	size_t		name_len = strlen(name);
	Buffer		buffer = InvalidBuffer;
	bool		from_tips = !IsolationIsSerializable();
	bool		found = memo != NULL && memo->nroots > 0;

	/* rows are unpacked into arrays of Natts_ts_counter_slot_max columns */
	if (!found || desc->natts > Natts_ts_counter_slot_max)
		return false;
	for (int i = 0; found && i < memo->nroots; i++)
	{
		ItemPointerData tid = memo->roots[i];
		BlockNumber block = ItemPointerGetBlockNumber(&tid);
		HeapTupleData tuple;
		Datum		values[Natts_ts_counter_slot_max];
		bool		isnull[Natts_ts_counter_slot_max];

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

		/*
		 * Prune the page of the row to update, as the index fetch of an
		 * UPDATE would, so that its next version finds room there (a HOT
		 * update).  Each page is pruned by its own slot's writers; the check
		 * costs a look at the transaction horizon, which is not worth paying
		 * for the pages that are only read.  The page may hold rows read
		 * before this one: they were copied or summed already.
		 */
		if (i == slot)
			heap_page_prune_opt(rel, buffer);
		LockBuffer(buffer, BUFFER_LOCK_SHARE);
		/* a HOT chain stays on its root's page, so the tip is on it too */
		if (from_tips && ItemPointerGetBlockNumber(&memo->tips[i]) == block &&
			ts_slot_row_from_tip(rel, buffer, &memo->tips[i], snapshot, &tuple))
			found = true;
		else
		{
			found = heap_hot_search_buffer(&tid, rel, buffer, snapshot, &tuple, NULL, true);
			if (found)
				memo->tips[i] = tid;
		}
		if (found)
		{
			text	   *row_name;

			heap_deform_tuple(&tuple, desc, values, isnull);
			/* a name stored out of line is not read under the buffer lock */
			if (VARATT_IS_EXTERNAL(DatumGetPointer(values[ts_rels.counter_name - 1])) ||
				VARATT_IS_COMPRESSED(DatumGetPointer(values[ts_rels.counter_name - 1])))
			{
				found = false;
				LockBuffer(buffer, BUFFER_LOCK_UNLOCK);
				break;
			}
			row_name = DatumGetTextPP(values[ts_rels.counter_name - 1]);
			found = VARSIZE_ANY_EXHDR(row_name) == name_len &&
				memcmp(VARDATA_ANY(row_name), name, name_len) == 0 &&
				DatumGetInt32(values[ts_rels.counter_slot_no - 1]) == i &&
				DatumGetInt32(values[ts_rels.counter_slots - 1]) == memo->nroots;
			if (found)
				ts_slot_rows_take(rows, slot, values, &tuple);
		}
		LockBuffer(buffer, BUFFER_LOCK_UNLOCK);
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

	ts_fastpath_lookup_rels();
	rel = ts_fastpath_open(&ts_rels.counter_slot, AccessShareLock);
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

	ts_fastpath_lookup_rels();
	if (ts_policy_uses_latest() && ts_counter_slots_remembered(key) > 1)
	{
		TsSlotRows	found = {0};
		Relation	rel = ts_fastpath_open(&ts_rels.counter_slot, AccessShareLock);
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
 * The transaction still in progress, other than this one, that updated,
 * deleted or locked this latest committed version of a row; invalid if none
 * (see keylock.c, "Keys held through their rows").
 */
static TransactionId
ts_tuple_writer(HeapTupleHeader tuple, Snapshot snapshot)
{
	TransactionId xmax;

	if (tuple->t_infomask & HEAP_XMAX_INVALID)
		return InvalidTransactionId;
	if (tuple->t_infomask & HEAP_XMAX_IS_MULTI)
	{
		/* several lockers, and maybe an updater: wait for the updater */
		if (HEAP_XMAX_IS_LOCKED_ONLY(tuple->t_infomask))
			return InvalidTransactionId;
		return ts_xact_writing(HeapTupleGetUpdateXid(tuple), snapshot);
	}
	xmax = HeapTupleHeaderGetRawXmax(tuple);
	/* a locker that is still there holds the row; one that is gone, not */
	if (HEAP_XMAX_IS_LOCKED_ONLY(tuple->t_infomask) && !TransactionIdIsInProgress(xmax))
		return InvalidTransactionId;
	return ts_xact_writing(xmax, snapshot);
}

/*
 * With a dirty snapshot, the transaction still in progress, other than this
 * one, that inserted the row the index keys find, and that an MVCC snapshot
 * cannot see yet; invalid if none.
 */
static TransactionId
ts_fastpath_inserter(bool counter, ScanKey keys, int nkeys)
{
	Relation	rel = ts_fastpath_open(counter ? &ts_rels.counter_slot : &ts_rels.credential,
									   AccessShareLock);
	TupleTableSlot *slot = table_slot_create(rel, NULL);
	SnapshotData dirty;
	TransactionId inserter = InvalidTransactionId;

	InitDirtySnapshot(dirty);
	if (ts_fastpath_fetch(rel, counter ? ts_rels.counter_slot_by_key : ts_rels.credential_by_key,
						  keys, nkeys, &dirty, slot))
	{
		bool		should_free;
		HeapTuple	tuple = ExecFetchSlotHeapTuple(slot, false, &should_free);
		TransactionId xmin = HeapTupleHeaderGetRawXmin(tuple->t_data);

		/*
		 * An inserter still in progress; or one that committed after the
		 * caller's snapshot, which did not show the row: the caller must read
		 * again (and waiting for a committed transaction costs nothing).
		 */
		if (TransactionIdIsValid(dirty.xmin))
			inserter = dirty.xmin;
		else if (TransactionIdIsNormal(xmin) && !TransactionIdIsCurrentTransactionId(xmin))
			inserter = xmin;
		if (should_free)
			heap_freetuple(tuple);
		if (TransactionIdIsValid(inserter) && TransactionIdIsCurrentTransactionId(inserter))
			inserter = InvalidTransactionId;
	}
	ExecDropSingleTupleTableSlot(slot);
	table_close(rel, AccessShareLock);
	return inserter;
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

	rel = ts_fastpath_open(&ts_rels.counter_slot, AccessShareLock);
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
		writer = ts_fastpath_inserter(true, keys, 2);
	}
	return writer;
}

/*
 * Who is inserting a user's credential row, not yet committed; invalid if
 * nobody.  The caller holds the user's lock and found no row.
 */
TransactionId
ts_credential_inserting(int32 realm_id, int64 user_id)
{
	ScanKeyData keys[2];

	ts_fastpath_lookup_rels();
	ScanKeyInit(&keys[0], 1, BTEqualStrategyNumber, F_INT4EQ, Int32GetDatum(realm_id));
	ScanKeyInit(&keys[1], 2, BTEqualStrategyNumber, F_INT8EQ, Int64GetDatum(user_id));
	return ts_fastpath_inserter(false, keys, 2);
}

/*
 * Is the row version at tid visible to a snapshot of the latest committed
 * state, that is, nobody has updated or deleted it since?
 */
static bool
ts_fastpath_row_is_latest(Relation rel, ItemPointer tid)
{
	Snapshot	latest = ts_latest_snapshot();
	TupleTableSlot *slot = table_slot_create(rel, NULL);
	bool		visible = ts_fastpath_fetch_at(rel, tid, latest, slot);

	ExecDropSingleTupleTableSlot(slot);
	ts_policy_release(latest);
	return visible;
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
 * after the caller's snapshot.  TS_SLOT_NOT_ADDED means no row for that slot (the counter is missing or
 * was created anew with fewer slots), a counter that is hot where a plain one
 * was expected or the reverse (added->slots tells the actual count), or a
 * slot value that would leave the bigint range.  Nothing was written then,
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
	HeapTuple	new_tuple;
	Datum		values[Natts_ts_counter_slot_max];
	bool		nulls[Natts_ts_counter_slot_max] = {false};
	bool		replace[Natts_ts_counter_slot_max] = {false};

	ts_fastpath_lookup_rels();
	rel = ts_fastpath_open(&ts_rels.counter_slot, RowExclusiveLock);
	if (!ts_counter_slot_is_plain(rel) ||
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
		pg_add_s64_overflow(rows.own_value, delta, &added->slot_value))
	{
		table_close(rel, RowExclusiveLock);
		return TS_SLOT_NOT_ADDED;
	}

	/*
	 * Under "repeatable read" the rows were read with the caller's snapshot,
	 * which the caller compared with the latest state.  Make sure all the
	 * same that the row to update is its slot's latest version, so that a
	 * change the comparison missed gives 40001, not heap_update's internal
	 * "tuple concurrently updated".
	 */
	if (!ts_policy_uses_latest() && !ts_fastpath_row_is_latest(rel, &rows.own->t_self))
	{
		table_close(rel, RowExclusiveLock);
		return TS_SLOT_CHANGED;
	}

	/*
	 * The version read is the latest committed one.  If a transaction still
	 * in progress updated it (an increment whose call has returned: the row
	 * holds the key now, see keylock.c; or a role writing the table
	 * directly), CatalogTupleUpdate would wait for it and then fail with an
	 * internal "tuple concurrently updated": tell the caller whom to wait
	 * for instead, and it reads again afterwards.
	 */
	added->writer = ts_tuple_writer(rows.own->t_data, snapshot);
	if (TransactionIdIsValid(added->writer))
	{
		heap_freetuple(rows.own);
		table_close(rel, RowExclusiveLock);
		return TS_SLOT_BUSY;
	}
	if (rows.own->t_data->t_infomask & HEAP_XMAX_IS_MULTI)
	{
		/* lockers this path does not expect: let SQL sort them out */
		heap_freetuple(rows.own);
		table_close(rel, RowExclusiveLock);
		return TS_SLOT_NO_DIRECT_PATH;
	}

	values[ts_rels.counter_value - 1] = Int64GetDatum(added->slot_value);
	values[ts_rels.counter_version - 1] = Int64GetDatum(rows.own_version + 1);
	values[ts_rels.counter_updated_at - 1] = TimestampTzGetDatum(GetCurrentTimestamp());
	replace[ts_rels.counter_value - 1] = true;
	replace[ts_rels.counter_version - 1] = true;
	replace[ts_rels.counter_updated_at - 1] = true;
	new_tuple = heap_modify_tuple(rows.own, RelationGetDescr(rel), values, nulls, replace);

	/*
	 * Under the caller's lock nobody else writes this row, so the update
	 * meets no concurrent one (a writer that bypasses turnstile's functions
	 * was sent to SQL above).
	 */
	CheckCmdReplicaIdentity(rel, CMD_UPDATE);
	CatalogTupleUpdate(rel, &rows.own->t_self, new_tuple);

	/* let the rest of this transaction, and this statement, see the change */
	CommandCounterIncrement();

	heap_freetuple(new_tuple);
	heap_freetuple(rows.own);
	table_close(rel, RowExclusiveLock);
	return TS_SLOT_ADDED;
}

PG_FUNCTION_INFO_V1(key_holders);

/*
 * key_holders() -> setof (object, counter, slot, slots, realm_id, user_id,
 * pid): the keys held through their rows (keylock.c), for turnstile.locks.
 * One row per row version that a transaction in progress inserted, updated
 * or deleted, found with a dirty snapshot (which shows such versions), and
 * the pid of the backend whose transaction it is.  The view removes
 * duplicates and decides how to show them.
 */
Datum
key_holders(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;

	InitMaterializedSRF(fcinfo, 0);
	ts_fastpath_lookup_rels();
	for (int table = 0; table < 2; table++)
	{
		bool		counters = table == 0;
		Relation	rel = ts_fastpath_open(counters ? &ts_rels.counter_slot : &ts_rels.credential,
										   AccessShareLock);
		TupleTableSlot *slot = table_slot_create(rel, NULL);
		SnapshotData dirty;
		TableScanDesc scan;

		InitDirtySnapshot(dirty);
		scan = table_beginscan(rel, &dirty, 0, NULL);
		while (table_scan_getnextslot(scan, ForwardScanDirection, slot))
		{
			TransactionId xid = TransactionIdIsValid(dirty.xmax) ? dirty.xmax : dirty.xmin;
			Datum		values[7];
			bool		nulls[7] = {false, false, false, false, false, false, false};
			int			pid;

			if (TransactionIdIsValid(xid))
				pid = BackendXidGetPid(SubTransGetTopmostTransaction(xid));
			else
			{
				bool		should_free;
				HeapTuple	tuple = ExecFetchSlotHeapTuple(slot, false, &should_free);

				/* a dirty snapshot shows this transaction's own versions plainly */
				pid = TransactionIdIsCurrentTransactionId(HeapTupleHeaderGetRawXmin(tuple->t_data)) ?
					MyProcPid : 0;
				if (should_free)
					heap_freetuple(tuple);
			}
			if (pid == 0)
				continue;		/* nobody holds it, or the writer ended meanwhile */
			slot_getallattrs(slot);
			values[0] = CStringGetTextDatum(counters ? "counter" : "credential");
			if (counters)
			{
				values[1] = slot->tts_values[ts_rels.counter_name - 1];
				values[2] = slot->tts_values[ts_rels.counter_slot_no - 1];
				values[3] = slot->tts_values[ts_rels.counter_slots - 1];
				nulls[4] = nulls[5] = true;
			}
			else
			{
				nulls[1] = nulls[2] = nulls[3] = true;
				values[4] = slot->tts_values[ts_rels.cred_realm_id - 1];
				values[5] = slot->tts_values[ts_rels.cred_user_id - 1];
			}
			values[6] = Int32GetDatum(pid);
			tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
		}
		table_endscan(scan);
		ExecDropSingleTupleTableSlot(slot);
		table_close(rel, AccessShareLock);
	}
	return (Datum) 0;
}
