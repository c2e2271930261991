/*-------------------------------------------------------------------------
 *
 * relaccess.c
 *	  The extension's tables read and written directly, without SPI: where
 *	  they are, that they are still as the extension created them, and how
 *	  to open them and fetch a row.
 *
 * The fresh credential hit, the realm access check and a counter's slot
 * reads and writes happen on almost every call; through SPI each would be a
 * whole query, with executor start-up, snapshot and portal bookkeeping that
 * cost more than the read itself (measured with perf; see bench/README.md).
 * Those paths (credential_state.c, counter_slot.c) reach the tables through
 * this file instead.
 *
 * The relation and index OIDs and the column numbers are looked up once per
 * backend and forgotten on any relcache invalidation of them (DROP
 * EXTENSION, a rewrite); with them go the memos of row places that other
 * files keep (ts_relaccess_on_change), since a rewrite moves every row.  The
 * tables are the extension's own, reached without permission checks in the
 * same way as the store reaches them as their owner.
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
#include "catalog/index.h"
#include "catalog/indexing.h"
#include "catalog/namespace.h"
#include "catalog/pg_am.h"
#include "catalog/pg_class.h"
#include "catalog/pg_index.h"
#include "catalog/pg_namespace.h"
#include "catalog/pg_type.h"
#include "executor/executor.h"
#include "storage/lmgr.h"
#include "storage/procarray.h"
#include "utils/builtins.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/syscache.h"

TsRels		ts_rels;
bool		ts_rels_valid = false;
static bool ts_rels_callback_registered = false;

/*
 * The files whose memos remember where rows were; each memo is dropped with
 * the OIDs.  A fixed few: each file registers once, from its initialiser.
 */
#define TS_RELACCESS_FORGET_MAX	4

static TsRelaccessForget ts_relaccess_forgets[TS_RELACCESS_FORGET_MAX];
static int	ts_relaccess_nforgets = 0;

void
ts_relaccess_on_change(TsRelaccessForget forget)
{
	if (ts_relaccess_nforgets == TS_RELACCESS_FORGET_MAX)
		elog(ERROR, "too many pg_turnstile row memos");
	ts_relaccess_forgets[ts_relaccess_nforgets++] = forget;
}

/*
 * Until the tables of 1.4 are there, any new relation may be one of them
 * (ALTER EXTENSION UPDATE creates them without touching the others), so
 * every change sends the lookup round again.
 */
static void
ts_relaccess_forget(Datum arg, Oid relid)
{
	if (relid == InvalidOid || relid == ts_rels.realm || relid == ts_rels.credential ||
		relid == ts_rels.realm_by_name || relid == ts_rels.credential_by_key ||
		relid == ts_rels.counter_slot || relid == ts_rels.counter_slot_by_key ||
		relid == ts_rels.realm_grant || relid == ts_rels.realm_grant_by_key ||
		!OidIsValid(ts_rels.rate_limit) ||
		relid == ts_rels.rate_limit || relid == ts_rels.rate_limit_by_key ||
		relid == ts_rels.idempotency_key || relid == ts_rels.idempotency_key_by_key ||
		relid == ts_rels.idempotency_key_by_used_at)
	{
		ts_rels_valid = false;
		for (int i = 0; i < ts_relaccess_nforgets; i++)
			ts_relaccess_forgets[i] ();
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
void
ts_relaccess_altered(const char *relname, const char *detail)
{
	ereport(ERROR,
			(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
			 errmsg("pg_turnstile relation turnstile.%s was altered", relname),
			 errdetail_internal("%s", detail),
			 errhint("Its tables must stay as the extension created them; reinstall the extension.")));
}

static Oid
ts_relaccess_relid(const char *name, Oid nspid)
{
	Oid			relid = get_relname_relid(name, nspid);

	if (!OidIsValid(relid))
		ts_relaccess_altered(name, "It is missing.");
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
ts_relaccess_attnum(Oid relid, const char *column, Oid type, bool missing_ok)
{
	HeapTuple	tuple = SearchSysCacheAttName(relid, column);
	Form_pg_attribute att;
	AttrNumber	attnum;
	Oid			atttype;

	if (!HeapTupleIsValid(tuple) && missing_ok)
		return InvalidAttrNumber;
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
ts_relaccess_check_index(Oid indexid, Oid relid, bool unique, int nkeys,
						 const AttrNumber *attnums)
{
	HeapTuple	tuple = SearchSysCache1(INDEXRELID, ObjectIdGetDatum(indexid));
	Form_pg_index index;
	bool		fits;

	if (!HeapTupleIsValid(tuple))
		ts_relaccess_altered(get_rel_name(indexid), "It is not an index.");
	index = (Form_pg_index) GETSTRUCT(tuple);
	fits = index->indrelid == relid && index->indnkeyatts == nkeys &&
		index->indisunique == unique && heap_attisnull(tuple, Anum_pg_index_indexprs, NULL) &&
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
		ts_relaccess_altered(get_rel_name(indexid),
							unique ?
							"It is no longer the unique b-tree index the extension created." :
							"It is no longer the b-tree index the extension created.");
}

/*
 * Every column any path reads, SQL or direct, with the type it is read as;
 * where the direct reads need its number, the member of TsRels that keeps it.
 */
#define TS_NO_MEMBER	SIZE_MAX

typedef struct TsColumn
{
	size_t		table;			/* offsetof(TsRels, the table's OID) */
	const char *name;
	Oid			type;
	size_t		attnum;			/* offsetof(TsRels, its number), or TS_NO_MEMBER */
	bool		since_1_5;		/* absent until ALTER EXTENSION UPDATE to 1.5 */
} TsColumn;

#define TS_COLUMN(table, name, type, member) \
	{offsetof(TsRels, table), name, type, offsetof(TsRels, member), false}
#define TS_COLUMN_SQL(table, name, type) \
	{offsetof(TsRels, table), name, type, TS_NO_MEMBER, false}
#define TS_COLUMN_1_5(table, name, type, member) \
	{offsetof(TsRels, table), name, type, offsetof(TsRels, member), true}

/*
 * The columns of the tables of 1.4, read directly when the tables are there
 * (until ALTER EXTENSION UPDATE to 1.4 they are not, and neither are the
 * functions that use them).
 */
static const TsColumn ts_columns_1_4[] = {
	TS_COLUMN(rate_limit, "key", TEXTOID, rl_key),
	TS_COLUMN(rate_limit, "window_start", TIMESTAMPTZOID, rl_window_start),
	TS_COLUMN(rate_limit, "count", INT8OID, rl_count),
	TS_COLUMN(rate_limit, "max", INT8OID, rl_max),
	TS_COLUMN(rate_limit, "per", INTERVALOID, rl_per),
	TS_COLUMN(rate_limit, "allowed", BOOLOID, rl_allowed),
	TS_COLUMN(rate_limit, "used_at", TIMESTAMPTZOID, rl_used_at),
	TS_COLUMN(idempotency_key, "key", TEXTOID, idem_key),
	TS_COLUMN(idempotency_key, "counter", TEXTOID, idem_counter),
	TS_COLUMN(idempotency_key, "delta", INT8OID, idem_delta),
	TS_COLUMN(idempotency_key, "result", INT8OID, idem_result),
	TS_COLUMN(idempotency_key, "used_at", TIMESTAMPTZOID, idem_used_at),
};

static const TsColumn ts_columns[] = {
	TS_COLUMN(realm, "realm_id", INT4OID, realm_id),
	TS_COLUMN(realm, "name", TEXTOID, realm_name),
	TS_COLUMN(realm, "ttl", INTERVALOID, realm_ttl),
	TS_COLUMN(realm, "refresh_ahead", INTERVALOID, realm_refresh_ahead),
	TS_COLUMN(realm, "registered_by", REGROLEOID, realm_registered_by),
	TS_COLUMN_SQL(realm, "login", TEXTOID),
	TS_COLUMN_SQL(realm, "validate", TEXTOID),
	TS_COLUMN_SQL(realm, "retry_after", INTERVALOID),
	TS_COLUMN_SQL(realm, "propagation", TEXTOID),
	TS_COLUMN_SQL(realm, "search_path", TEXTOID),
	TS_COLUMN(realm_grant, "realm_id", INT4OID, grant_realm_id),
	TS_COLUMN(realm_grant, "grantee", REGROLEOID, grant_grantee),
	TS_COLUMN(credential, "realm_id", INT4OID, cred_realm_id),
	TS_COLUMN(credential, "user_id", INT8OID, cred_user_id),
	TS_COLUMN(credential, "credential", TEXTOID, cred_credential),
	TS_COLUMN(credential, "invalidated", BOOLOID, cred_invalidated),
	TS_COLUMN(credential, "validated_at", TIMESTAMPTZOID, cred_validated_at),
	TS_COLUMN_SQL(credential, "issued_at", TIMESTAMPTZOID),
	TS_COLUMN_SQL(credential, "logins", INT8OID),
	TS_COLUMN_SQL(credential, "validations", INT8OID),
	TS_COLUMN_SQL(credential, "failures", INT4OID),
	TS_COLUMN_SQL(credential, "last_error", TEXTOID),
	TS_COLUMN_SQL(credential, "last_sqlstate", TEXTOID),
	TS_COLUMN_SQL(credential, "failed_at", TIMESTAMPTZOID),
	TS_COLUMN_SQL(credential, "version", INT8OID),
	TS_COLUMN(counter_slot, "name", TEXTOID, counter_name),
	TS_COLUMN(counter_slot, "slots", INT4OID, counter_slots),
	TS_COLUMN(counter_slot, "slot", INT4OID, counter_slot_no),
	TS_COLUMN(counter_slot, "value", INT8OID, counter_value),
	TS_COLUMN(counter_slot, "version", INT8OID, counter_version),
	TS_COLUMN(counter_slot, "updated_at", TIMESTAMPTZOID, counter_updated_at),
	TS_COLUMN_SQL(counter_slot, "created_at", TIMESTAMPTZOID),
	TS_COLUMN_1_5(counter_slot, "lower", INT8OID, counter_lower),
	TS_COLUMN_1_5(counter_slot, "upper", INT8OID, counter_upper),
	TS_COLUMN_1_5(counter_slot, "slot_lower", INT8OID, counter_slot_lower),
	TS_COLUMN_1_5(counter_slot, "slot_upper", INT8OID, counter_slot_upper),
};

/*
 * Look up (once per backend, and again after any change to them) the
 * extension's tables and indexes, and check their shape: every column that
 * any path reads, with its type, and the indexes the direct reads scan.
 */
void
ts_relaccess_lookup_tables(void)
{
	Oid			nspid;
	TsRels		r;
	int			columns_1_5 = 0;

	if (!ts_rels_callback_registered)
	{
		CacheRegisterRelcacheCallback(ts_relaccess_forget, (Datum) 0);
		ts_rels_callback_registered = true;
	}
	nspid = get_namespace_oid("turnstile", false);
	r.realm = ts_relaccess_relid("realm", nspid);
	r.realm_by_name = ts_relaccess_relid("realm_name_key", nspid);
	r.credential = ts_relaccess_relid("credential", nspid);
	r.credential_by_key = ts_relaccess_relid("credential_pkey", nspid);
	r.counter_slot = ts_relaccess_relid("counter_slot", nspid);
	r.counter_slot_by_key = ts_relaccess_relid("counter_slot_pkey", nspid);
	r.realm_grant = ts_relaccess_relid("realm_grant", nspid);
	r.realm_grant_by_key = ts_relaccess_relid("realm_grant_pkey", nspid);

	for (int i = 0; i < lengthof(ts_columns); i++)
	{
		const TsColumn *column = &ts_columns[i];
		Oid			table = *(Oid *) ((char *) &r + column->table);
		AttrNumber	attnum = ts_relaccess_attnum(table, column->name, column->type,
												 column->since_1_5);

		if (column->attnum != TS_NO_MEMBER)
			*(AttrNumber *) ((char *) &r + column->attnum) = attnum;
		if (column->since_1_5)
			columns_1_5 += attnum != InvalidAttrNumber;
	}

	/*
	 * The columns of 1.5 come together, with ALTER EXTENSION UPDATE: until
	 * then counters have no bounds.  Some of them alone means the table was
	 * altered.
	 */
	r.counter_has_bounds = columns_1_5 > 0;
	if (columns_1_5 > 0 && r.counter_slot_upper * r.counter_slot_lower *
		r.counter_lower * r.counter_upper == 0)
		ts_relaccess_altered(get_rel_name(r.counter_slot),
							 "It has some of the columns of counter bounds, not all.");

	ts_relaccess_check_index(r.realm_by_name, r.realm, true, 1,
							 (AttrNumber[]) {r.realm_name});
	ts_relaccess_check_index(r.credential_by_key, r.credential, true, 2,
							 (AttrNumber[]) {r.cred_realm_id, r.cred_user_id});
	ts_relaccess_check_index(r.counter_slot_by_key, r.counter_slot, true, 2,
							 (AttrNumber[]) {r.counter_name, r.counter_slot_no});
	ts_relaccess_check_index(r.realm_grant_by_key, r.realm_grant, true, 2,
							 (AttrNumber[]) {r.grant_realm_id, r.grant_grantee});

	/* the tables of 1.4, if they are there yet */
	r.rate_limit = get_relname_relid("rate_limit", nspid);
	r.idempotency_key = get_relname_relid("idempotency_key", nspid);
	if (OidIsValid(r.rate_limit) != OidIsValid(r.idempotency_key))
		ts_relaccess_altered(OidIsValid(r.rate_limit) ? "idempotency_key" : "rate_limit",
							 "It is missing.");
	if (OidIsValid(r.rate_limit))
	{
		r.rate_limit_by_key = ts_relaccess_relid("rate_limit_pkey", nspid);
		r.idempotency_key_by_key = ts_relaccess_relid("idempotency_key_pkey", nspid);
		r.idempotency_key_by_used_at = ts_relaccess_relid("idempotency_key_used_at", nspid);
		for (int i = 0; i < lengthof(ts_columns_1_4); i++)
		{
			const TsColumn *column = &ts_columns_1_4[i];
			Oid			table = *(Oid *) ((char *) &r + column->table);
			AttrNumber	attnum = ts_relaccess_attnum(table, column->name, column->type,
													 false);

			if (column->attnum != TS_NO_MEMBER)
				*(AttrNumber *) ((char *) &r + column->attnum) = attnum;
		}
		ts_relaccess_check_index(r.rate_limit_by_key, r.rate_limit, true, 1,
								 (AttrNumber[]) {r.rl_key});
		ts_relaccess_check_index(r.idempotency_key_by_key, r.idempotency_key, true, 1,
								 (AttrNumber[]) {r.idem_key});
		ts_relaccess_check_index(r.idempotency_key_by_used_at, r.idempotency_key, false, 1,
								 (AttrNumber[]) {r.idem_used_at});
	}
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
Relation
ts_relaccess_open(const Oid *relid, LOCKMODE mode)
{
	for (int attempt = 0;; attempt++)
	{
		Oid			locked;

		ts_relaccess_lookup();
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
 * May rows of this table be written directly (ts_relaccess_update_row,
 * ts_relaccess_insert_row)?  Only while it is as the extension created it:
 * no triggers, rules, row security, CHECK constraints or generated columns
 * (the executor applies them, a direct update would not), no more columns
 * than the direct paths unpack, and exactly the indexes given, which
 * lookup_tables checked to be plain b-tree indexes on columns (the direct
 * writes maintain no other kind).  Otherwise the caller writes through SQL,
 * so that they apply.
 */
bool
ts_relaccess_writable(Relation rel, int nindexes, const Oid *indexes)
{
	List	   *found;
	bool		writable;
	TupleConstr *constr = RelationGetDescr(rel)->constr;

	if (rel->trigdesc != NULL || rel->rd_rules != NULL || rel->rd_rel->relrowsecurity ||
		(constr != NULL && (constr->num_check > 0 || constr->has_generated_stored)) ||
		RelationGetDescr(rel)->natts > TS_DIRECT_NATTS_MAX)
		return false;
	found = RelationGetIndexList(rel);
	writable = list_length(found) == nindexes;
	for (int i = 0; writable && i < nindexes; i++)
		writable = list_member_oid(found, indexes[i]);
	list_free(found);
	return writable;
}

/*
 * Index a new version of a row that could not be a heap-only one (its page
 * had no room), as CatalogTupleUpdate would: into every index of rel, which
 * ts_relaccess_writable found to be the plain b-tree indexes on columns
 * that the extension made.
 */
static void
ts_relaccess_index_row(Relation rel, HeapTuple row)
{
	CatalogIndexState indexes = CatalogOpenIndexes(rel);
	TupleTableSlot *slot = MakeSingleTupleTableSlot(RelationGetDescr(rel), &TTSOpsHeapTuple);

	ExecStoreHeapTuple(row, slot, false);
	for (int i = 0; i < indexes->ri_NumIndices; i++)
	{
		IndexInfo  *info = indexes->ri_IndexRelationInfo[i];
		Datum		values[INDEX_MAX_KEYS];
		bool		isnull[INDEX_MAX_KEYS];

		/* an index being built concurrently is not written to yet */
		if (!info->ii_ReadyForInserts)
			continue;
		FormIndexDatum(info, slot, NULL, values, isnull);
		index_insert(indexes->ri_IndexRelationDescs[i], values, isnull, &row->t_self, rel,
					 info->ii_Unique ? UNIQUE_CHECK_YES : UNIQUE_CHECK_NO, false, info);
	}
	ExecDropSingleTupleTableSlot(slot);
	CatalogCloseIndexes(indexes);
}

/*
 * Write a new version of row, a copy of a row of rel, with the columns that
 * replace marks set to values (arrays of TS_DIRECT_NATTS_MAX), as an UPDATE
 * would: refused if updates are published without a replica identity, the
 * indexes maintained, and the change visible to the rest of the transaction
 * and to this statement.  The caller has checked ts_relaccess_writable.
 *
 * Like an UPDATE, and unlike CatalogTupleUpdate, this takes no lock of its
 * own first: it waits for a transaction still writing the row, and returns
 * TM_Updated or TM_Deleted, having written nothing, if the row has a newer
 * version or is gone, for the caller to decide again on the latest one.  So
 * a caller that read the latest version and meets no other writer writes
 * the row once, without the separate row lock (and its WAL record) that
 * SELECT ... FOR UPDATE or ON CONFLICT DO UPDATE would take first.  The
 * indexes are opened only when the new version is not heap-only, which on
 * the extension's tables (fillfactor below 100, no indexed column changed)
 * it almost never is.
 */
TM_Result
ts_relaccess_try_update_row(Relation rel, HeapTuple row, Datum *values, bool *replace)
{
	bool		nulls[TS_DIRECT_NATTS_MAX] = {false};
	HeapTuple	updated = heap_modify_tuple(row, RelationGetDescr(rel), values, nulls,
											replace);
	TM_FailureData failure;
	LockTupleMode lockmode;
	TM_Result	result;
	bool		heap_only;

	CheckCmdReplicaIdentity(rel, CMD_UPDATE);
#if PG_VERSION_NUM >= 160000
	{
		TU_UpdateIndexes update_indexes;

		result = heap_update(rel, &row->t_self, updated, GetCurrentCommandId(true),
							 InvalidSnapshot, true, &failure, &lockmode, &update_indexes);

		/*
		 * TU_Summarizing, a heap-only version that only summarizing (BRIN)
		 * indexes must see, cannot come back: ts_relaccess_writable admits
		 * only the extension's b-tree indexes.  Were it to, the b-tree
		 * indexes must not get an entry for a heap-only version.
		 */
		heap_only = update_indexes != TU_All;
	}
#else
	result = heap_update(rel, &row->t_self, updated, GetCurrentCommandId(true),
						 InvalidSnapshot, true, &failure, &lockmode);
	heap_only = HeapTupleIsHeapOnly(updated);
#endif
	if (result == TM_Ok)
	{
		if (!heap_only)
			ts_relaccess_index_row(rel, updated);
		CommandCounterIncrement();
	}
	heap_freetuple(updated);
	return result;
}

/*
 * ts_relaccess_try_update_row for a caller that holds what makes it the
 * row's only writer (a key's lock, or the row's), so that the update meets
 * no concurrent one: anything but success is an error, as in
 * simple_heap_update.
 */
void
ts_relaccess_update_row(Relation rel, HeapTuple row, Datum *values, bool *replace)
{
	TM_Result	result = ts_relaccess_try_update_row(rel, row, values, replace);

	if (result != TM_Ok)
		elog(ERROR, "pg_turnstile: row of \"%s\" concurrently updated or deleted (%d)",
			 RelationGetRelationName(rel), (int) result);
}

/*
 * Insert a row into rel, made of values and nulls (arrays of
 * TS_DIRECT_NATTS_MAX), as an INSERT would: the indexes maintained (a
 * unique one raising 23505 on a duplicate), and the row visible to the rest
 * of the transaction and to this statement.  The caller has checked
 * ts_relaccess_writable and that it sets every column.
 */
void
ts_relaccess_insert_row(Relation rel, Datum *values, bool *nulls)
{
	HeapTuple	row = heap_form_tuple(RelationGetDescr(rel), values, nulls);

	CatalogTupleInsert(rel, row);
	CommandCounterIncrement();
	heap_freetuple(row);
}

/*
 * Open the index and begin a scan of it for the keys, in the index's
 * collations; ts_relaccess_end_lookup ends it.
 */
static IndexScanDesc
ts_relaccess_begin_lookup(Relation rel, Oid indexid, ScanKey keys, int nkeys,
						  Snapshot snapshot)
{
	Relation	index = index_open(indexid, AccessShareLock);
	IndexScanDesc scan;

	for (int i = 0; i < nkeys; i++)
		keys[i].sk_collation = index->rd_indcollation[i];
	scan = ts_index_beginscan(rel, index, snapshot, nkeys);
	index_rescan(scan, keys, nkeys, NULL, 0);
	return scan;
}

static void
ts_relaccess_end_lookup(IndexScanDesc scan)
{
	Relation	index = scan->indexRelation;

	index_endscan(scan);
	index_close(index, AccessShareLock);
}

/*
 * Fetch the one row of a unique index lookup into slot; false if none.
 */
bool
ts_relaccess_fetch(Relation rel, Oid indexid, ScanKey keys, int nkeys,
				  Snapshot snapshot, TupleTableSlot *slot)
{
	IndexScanDesc scan = ts_relaccess_begin_lookup(rel, indexid, keys, nkeys, snapshot);
	bool		found = index_getnext_slot(scan, ForwardScanDirection, slot);

	if (found)
		slot_getallattrs(slot);
	ts_relaccess_end_lookup(scan);
	return found;
}

/*
 * Prune a page whose free space is below this before reading a row to
 * update on it (see ts_relaccess_fetch_to_update): a tenth of the page,
 * room for some eight more versions of the extension's rows, and the least
 * free space below which heap_page_prune_opt itself prunes, so that when
 * asked it does (it prunes a table of fillfactor 100 at the same point).
 */
#define TS_PRUNE_BELOW	(BLCKSZ / 10)

/*
 * ts_relaccess_fetch for a row the caller is about to update, which prunes
 * the row's page only when the page is nearly full.
 *
 * An index fetch prunes the page's dead row versions whenever its free
 * space is below the table's fillfactor reserve (at least a tenth of the
 * page).  On a page that inserts filled up to the fillfactor, that is after
 * every single HOT update: each update paid for a pass over every row of
 * its page to remove one dead version (measured with callgrind: 15,500 of
 * the 50,800 instructions of a call of rate_limit).  Pruning only when the
 * room left is short of a few versions removes some fifteen of them in one
 * pass on a page of fillfactor 70, and the HOT updates still find room.
 * Pruning is an optimisation that PostgreSQL also does from other reads
 * and from VACUUM; doing it less often here changes nothing that any
 * reader sees.
 */
bool
ts_relaccess_fetch_to_update(Relation rel, Oid indexid, ScanKey keys, int nkeys,
							 Snapshot snapshot, TupleTableSlot *slot)
{
	IndexScanDesc scan = ts_relaccess_begin_lookup(rel, indexid, keys, nkeys, snapshot);
	ItemPointer tid;
	bool		found = false;

	/*
	 * The index may hold several entries for the key, of versions that a
	 * delete or an update off the page left behind; one at most shows.
	 */
	while (!found && (tid = index_getnext_tid(scan, ForwardScanDirection)) != NULL)
	{
		ItemPointerData at = *tid;
		Buffer		buffer = ReadBuffer(rel, ItemPointerGetBlockNumber(&at));
		Page		page = BufferGetPage(buffer);
		HeapTupleData tuple;
		bool		all_dead = false;

		/* read without the lock, as heap_page_prune_opt reads it: a hint */
		if (PageIsFull(page) || PageGetHeapFreeSpace(page) < TS_PRUNE_BELOW)
			heap_page_prune_opt(rel, buffer);
		LockBuffer(buffer, BUFFER_LOCK_SHARE);
		found = heap_hot_search_buffer(&at, rel, buffer, snapshot, &tuple, &all_dead, true);
		if (found)
		{
			/*
			 * A copy, made under the lock: tuple is on this stack, and its
			 * header on the page changes when another caller updates it.
			 */
			slot->tts_tableOid = RelationGetRelid(rel);
			ExecStoreBufferHeapTuple(&tuple, slot, buffer);
			ExecMaterializeSlot(slot);
		}
		LockBuffer(buffer, BUFFER_LOCK_UNLOCK);
		if (found)
			slot_getallattrs(slot);
		/* an entry of versions all dead to everyone can go, as an index scan would let it */
		scan->kill_prior_tuple = all_dead;
		ReleaseBuffer(buffer);
	}
	ts_relaccess_end_lookup(scan);
	return found;
}

/*
 * Fetch the row version at tid into slot if the snapshot shows it; false if
 * it does not, or if the page is gone.
 */
bool
ts_relaccess_fetch_at(Relation rel, ItemPointer tid, Snapshot snapshot,
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
 * The transaction still in progress, other than this one, that updated,
 * deleted or locked this latest committed version of a row; invalid if none
 * (see keylock.c, "Keys held through their rows").
 */
TransactionId
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
 * one, that inserted the row the keys find in the table's unique index
 * (relid and indexid point into ts_rels), and that an MVCC snapshot
 * cannot see yet; invalid if none.
 */
TransactionId
ts_relaccess_inserter(const Oid *relid, const Oid *indexid, ScanKey keys, int nkeys)
{
	Relation	rel = ts_relaccess_open(relid, AccessShareLock);
	TupleTableSlot *slot = table_slot_create(rel, NULL);
	SnapshotData dirty;
	TransactionId inserter = InvalidTransactionId;

	InitDirtySnapshot(dirty);
	if (ts_relaccess_fetch(rel, *indexid, keys, nkeys, &dirty, slot))
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
 * Is the row version at tid visible to a snapshot of the latest committed
 * state, that is, nobody has updated or deleted it since?
 */
bool
ts_relaccess_row_is_latest(Relation rel, ItemPointer tid)
{
	Snapshot	latest = ts_latest_snapshot();
	TupleTableSlot *slot = table_slot_create(rel, NULL);
	bool		visible = ts_relaccess_fetch_at(rel, tid, latest, slot);

	ExecDropSingleTupleTableSlot(slot);
	ts_policy_release(latest);
	return visible;
}

