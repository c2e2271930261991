/*-------------------------------------------------------------------------
 *
 * relaccess.h
 *	  Direct access to the extension's own tables (relaccess.c), for the
 *	  files that read and write them without SPI: counter_slot.c,
 *	  credential_state.c and locks.c.
 *
 *-------------------------------------------------------------------------
 */
#ifndef TURNSTILE_RELACCESS_H
#define TURNSTILE_RELACCESS_H

#include "turnstile.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/relscan.h"
#include "access/skey.h"
#include "access/tableam.h"
#include "executor/tuptable.h"
#include "storage/bufmgr.h"
#include "storage/smgr.h"
#include "utils/rel.h"

/* private to the library, as in turnstile.h */
#pragma GCC visibility push(hidden)

/*
 * The extension's tables and indexes that are read directly, and the
 * numbers of the columns read.  Looked up once per backend and again after
 * any change to them (ts_relaccess_lookup); valid only until the next
 * relcache invalidation, so a caller opens a table with ts_relaccess_open
 * before it reads anything here.
 */
typedef struct TsRels
{
	Oid			realm;
	Oid			realm_by_name;	/* unique index on realm(name) */
	Oid			credential;
	Oid			credential_by_key;	/* primary key (realm_id, user_id) */
	Oid			counter_slot;
	Oid			counter_slot_by_key;	/* primary key (name, slot) */
	Oid			realm_grant;
	Oid			realm_grant_by_key; /* primary key (realm_id, grantee) */
	/* the tables of 1.4, InvalidOid until ALTER EXTENSION UPDATE to 1.4 */
	Oid			rate_limit;
	Oid			rate_limit_by_key;	/* primary key (key) */
	Oid			idempotency_key;
	Oid			idempotency_key_by_key; /* primary key (key) */
	Oid			idempotency_key_by_used_at; /* index on (used_at) */
	AttrNumber	realm_id;
	AttrNumber	realm_name;
	AttrNumber	realm_ttl;
	AttrNumber	realm_refresh_ahead;
	AttrNumber	realm_registered_by;
	AttrNumber	grant_realm_id;
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
	/* the bounds' columns, 0 until ALTER EXTENSION UPDATE to 1.5 */
	AttrNumber	counter_lower;
	AttrNumber	counter_upper;
	AttrNumber	counter_slot_lower;
	AttrNumber	counter_slot_upper;
	bool		counter_has_bounds;
	AttrNumber	rl_key;
	AttrNumber	rl_window_start;
	AttrNumber	rl_count;
	AttrNumber	rl_max;
	AttrNumber	rl_per;
	AttrNumber	rl_allowed;
	AttrNumber	rl_used_at;
	AttrNumber	idem_key;
	AttrNumber	idem_counter;
	AttrNumber	idem_delta;
	AttrNumber	idem_result;
	AttrNumber	idem_used_at;
} TsRels;

/* the most columns a table written directly may have (rows are unpacked into arrays) */
#define TS_DIRECT_NATTS_MAX	16

extern TsRels ts_rels;
extern bool ts_rels_valid;

extern void ts_relaccess_lookup_tables(void);

/* Look the tables up unless they are known: inline, since every call asks. */
static inline void
ts_relaccess_lookup(void)
{
	if (likely(ts_rels_valid))
		return;
	ts_relaccess_lookup_tables();
}

/*
 * index_beginscan for every supported version: PostgreSQL 18 added an
 * IndexScanInstrumentation argument, which these reads do not use.
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
static inline bool
ts_block_exists(Relation rel, BlockNumber block)
{
	BlockNumber known = RelationGetSmgr(rel)->smgr_cached_nblocks[MAIN_FORKNUM];

	if (known != InvalidBlockNumber && block < known)
		return true;
	return block < RelationGetNumberOfBlocks(rel);
}

/* A memo of row places to drop when the tables change (see relaccess.c). */
typedef void (*TsRelaccessForget) (void);

extern void ts_relaccess_on_change(TsRelaccessForget forget);
extern void ts_relaccess_altered(const char *relname, const char *detail);
extern Relation ts_relaccess_open(const Oid *relid, LOCKMODE mode);
extern bool ts_relaccess_writable(Relation rel, int nindexes, const Oid *indexes);
extern TM_Result ts_relaccess_try_update_row(Relation rel, HeapTuple row, Datum *values,
											 bool *replace);
extern void ts_relaccess_update_row(Relation rel, HeapTuple row, Datum *values,
									bool *replace);
extern void ts_relaccess_insert_row(Relation rel, Datum *values, bool *nulls);
extern bool ts_relaccess_fetch(Relation rel, Oid indexid, ScanKey keys, int nkeys,
							   Snapshot snapshot, TupleTableSlot *slot);
extern bool ts_relaccess_fetch_to_update(Relation rel, Oid indexid, ScanKey keys,
										 int nkeys, Snapshot snapshot,
										 TupleTableSlot *slot);
extern bool ts_relaccess_fetch_at(Relation rel, ItemPointer tid, Snapshot snapshot,
								  TupleTableSlot *slot);
extern bool ts_relaccess_row_is_latest(Relation rel, ItemPointer tid);
extern TransactionId ts_tuple_writer(HeapTupleHeader tuple, Snapshot snapshot);
extern TransactionId ts_relaccess_inserter(const Oid *relid, const Oid *indexid,
										   ScanKey keys, int nkeys);

#pragma GCC visibility pop

#endif							/* TURNSTILE_RELACCESS_H */
