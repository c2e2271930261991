/*-------------------------------------------------------------------------
 *
 * credential_state.c
 *	  A user's cached credential as the store holds it: reading it (with its
 *	  realm), storing a new one, recording a failed refresh.
 *
 * A read gives the realm (its login and validate, as registered) and the
 * user's row, judged by the server's clock at the time of the read: fresh,
 * usable, blocked by a recent failure.  A read under the user's lock also
 * says which open transaction, if any, wrote the row (and so holds the
 * user, see keylock.c); the callers wait for it before they act.
 *
 * Most credential_get calls find a fresh credential and return it without a
 * lock.  Through SPI that would be a whole query per call, with executor
 * start-up and a join; ts_credential_fresh_hit makes it two index lookups
 * (relaccess.c): the realm by name, then the user's credential by primary
 * key, both with the snapshot the isolation policy names, and each from
 * where it was last time when the snapshot still shows it there.  Anything
 * that is not a fresh hit (no realm, no credential, invalidated, expired,
 * inside the refresh-ahead window) goes to the full read with SPI, which
 * decides again; so the direct read only has to be right about "fresh",
 * never about what to do otherwise.  Who may use a realm (its grants) is
 * checked on every call, directly too.
 *
 *-------------------------------------------------------------------------
 */
#include "relaccess.h"

#include "access/stratnum.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/transam.h"
#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/executor.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/fmgroids.h"
#include "utils/hsearch.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"


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

/* Forget where rows were: the tables changed, and their rows may have moved. */
static void
ts_row_memos_forget(void)
{
	ts_realm_memo.valid = false;
	ts_credential_memo_stale = true;
}

void
ts_credential_state_init(void)
{
	ts_relaccess_on_change(ts_row_memos_forget);
}


/*
 * Fetch the realm's row from where it was last time (ts_realm_memo) into
 * slot; false if it is not there any more.
 */
static bool
ts_realm_row_at_memo(Relation realm, const char *realm_name, Snapshot snapshot,
						  TupleTableSlot *slot)
{
	text	   *name;

	if (!ts_realm_memo.valid || strcmp(ts_realm_memo.name, realm_name) != 0 ||
		!ts_relaccess_fetch_at(realm, &ts_realm_memo.tid, snapshot, slot))
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
ts_realm_row_direct(const char *realm_name, Snapshot snapshot, int32 *realm_id,
				  Oid *registered_by, Interval **ttl, Interval **refresh_ahead)
{
	Relation	realm = ts_relaccess_open(&ts_rels.realm, AccessShareLock);
	TupleTableSlot *slot = table_slot_create(realm, NULL);
	ScanKeyData key;
	bool		found;

	found = ts_realm_row_at_memo(realm, realm_name, snapshot, slot);
	if (!found)
	{
		ScanKeyInit(&key, 1, BTEqualStrategyNumber, F_TEXTEQ,
					CStringGetTextDatum(realm_name));
		found = ts_relaccess_fetch(realm, ts_rels.realm_by_name, &key, 1, snapshot, slot);
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
ts_credential_row_direct(Relation credential, int32 realm_id, int64 user_id,
						   Snapshot snapshot, TupleTableSlot *slot)
{
	bool		remembered;
	TsCredentialMemo *memo = ts_credential_memo_entry(realm_id, user_id, &remembered);
	ScanKeyData keys[2];

	if (remembered && ts_relaccess_fetch_at(credential, &memo->tid, snapshot, slot) &&
		DatumGetInt32(slot->tts_values[ts_rels.cred_realm_id - 1]) == realm_id &&
		DatumGetInt64(slot->tts_values[ts_rels.cred_user_id - 1]) == user_id)
		return true;

	ScanKeyInit(&keys[0], 1, BTEqualStrategyNumber, F_INT4EQ, Int32GetDatum(realm_id));
	ScanKeyInit(&keys[1], 2, BTEqualStrategyNumber, F_INT8EQ, Int64GetDatum(user_id));
	if (!ts_relaccess_fetch(credential, ts_rels.credential_by_key, keys, 2, snapshot, slot))
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
ts_credential_if_fresh(int32 realm_id, int64 user_id, Interval *ttl,
					   Interval *refresh_ahead, Snapshot snapshot)
{
	Relation	credential = ts_relaccess_open(&ts_rels.credential, AccessShareLock);
	TupleTableSlot *slot = table_slot_create(credential, NULL);
	text	   *result = NULL;

	if (ts_credential_row_direct(credential, realm_id, user_id, snapshot, slot) &&
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
	ts_relaccess_lookup();
	snapshot = ts_policy_snapshot();
	/* a caller without access gets its error from the full path */
	if (ts_realm_row_direct(realm_name, snapshot, &realm_id, &registered_by, &ttl,
						  &refresh_ahead) &&
		ts_realm_accessible(GetUserId(), realm_id, registered_by, snapshot))
		result = ts_credential_if_fresh(realm_id, user_id, ttl, refresh_ahead, snapshot);
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

	ts_relaccess_lookup();
	rel = ts_relaccess_open(&ts_rels.realm_grant, AccessShareLock);
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
 * Who is inserting a user's credential row, not yet committed; invalid if
 * nobody.  The caller holds the user's lock and found no row.
 */
TransactionId
ts_credential_inserting(int32 realm_id, int64 user_id)
{
	ScanKeyData keys[2];

	ts_relaccess_lookup();
	ScanKeyInit(&keys[0], 1, BTEqualStrategyNumber, F_INT4EQ, Int32GetDatum(realm_id));
	ScanKeyInit(&keys[1], 2, BTEqualStrategyNumber, F_INT8EQ, Int64GetDatum(user_id));
	return ts_relaccess_inserter(&ts_rels.credential, &ts_rels.credential_by_key, keys, 2);
}


/*
 * The realm and the user's cached state in one read.  fresh and usable are
 * computed by the server's clock at the time of the read.
 */
static TsStatement ts_stmt_lookup = {
	"SELECT r.realm_id, pg_catalog.to_regprocedure(r.login)::pg_catalog.oid,"
	"       pg_catalog.to_regprocedure(r.validate)::pg_catalog.oid, r.registered_by,"
	"       r.propagation,"
	"       c.user_id IS NOT NULL, c.credential, c.invalidated,"
	"       c.validated_at OPERATOR(pg_catalog.+) r.ttl"
	"         OPERATOR(pg_catalog.-) r.refresh_ahead"
	"         OPERATOR(pg_catalog.>) pg_catalog.clock_timestamp(),"
	"       c.validated_at OPERATOR(pg_catalog.+) r.ttl"
	"         OPERATOR(pg_catalog.>) pg_catalog.clock_timestamp(),"
	"       c.version, c.xmin,"
	"       c.failed_at OPERATOR(pg_catalog.+) r.retry_after"
	"         OPERATOR(pg_catalog.>) pg_catalog.clock_timestamp(),"
	"       c.last_error, c.last_sqlstate,"
	"       (c.failed_at OPERATOR(pg_catalog.+) r.retry_after)::pg_catalog.text,"
	"       r.search_path, r.login, r.validate, c.xmax, r.xmin"
	"  FROM turnstile.realm r"
	"  LEFT JOIN turnstile.credential c"
	"    ON c.realm_id OPERATOR(pg_catalog.=) r.realm_id"
	"   AND c.user_id OPERATOR(pg_catalog.=) $2"
	" WHERE r.name OPERATOR(pg_catalog.=) $1",
	2, {TEXTOID, INT8OID}
};

/* ts_stmt_lookup's columns, in its order (SPI numbers them from 1). */
enum
{
	LOOKUP_REALM_ID = 1,
	LOOKUP_LOGIN,
	LOOKUP_VALIDATE,
	LOOKUP_REGISTERED_BY,
	LOOKUP_PROPAGATION,
	LOOKUP_EXISTS,
	LOOKUP_CREDENTIAL,
	LOOKUP_INVALIDATED,
	LOOKUP_FRESH,
	LOOKUP_USABLE,
	LOOKUP_VERSION,
	LOOKUP_XMIN,
	LOOKUP_BLOCKED,
	LOOKUP_LAST_ERROR,
	LOOKUP_LAST_SQLSTATE,
	LOOKUP_BLOCKED_UNTIL,
	LOOKUP_SEARCH_PATH,
	LOOKUP_LOGIN_SIGNATURE,
	LOOKUP_VALIDATE_SIGNATURE,
	LOOKUP_XMAX,
	LOOKUP_REALM_XMIN
};

static TsStatement ts_stmt_record_failure = {
	"INSERT INTO turnstile.credential AS c"
	"       (realm_id, user_id, failures, last_error, last_sqlstate, failed_at)"
	" SELECT r.realm_id, $2, 1, $3, $4, pg_catalog.clock_timestamp()"
	"   FROM turnstile.realm r WHERE r.name OPERATOR(pg_catalog.=) $1"
	" ON CONFLICT (realm_id, user_id) DO UPDATE"
	"    SET failures = c.failures OPERATOR(pg_catalog.+) 1,"
	"        last_error = excluded.last_error, last_sqlstate = excluded.last_sqlstate,"
	"        failed_at = excluded.failed_at,"
	"        version = c.version OPERATOR(pg_catalog.+) 1",
	4, {TEXTOID, INT8OID, TEXTOID, TEXTOID}
};

/*
 * Read a realm and one user's cached credential with the given snapshot.
 * Raises 42704 if the realm does not exist.  Runs inside a store session;
 * the strings it returns live in the session's caller context.
 */
void
ts_credential_read(TsStoreSession *session, const char *realm_name, int64 user_id,
				   Snapshot snapshot, TsRealm *realm, TsCredential *cached)
{
	Datum		args[2] = {CStringGetTextDatum(realm_name), Int64GetDatum(user_id)};
	bool		isnull;
	char	   *propagation;

	/* not read-only: SPI then lets the snapshot see this call's own writes */
	if (ts_store_exec(&ts_stmt_lookup, args, NULL, snapshot, false) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("realm \"%s\" does not exist", realm_name),
				 errhint("Register it with turnstile.realm_set.")));

	realm->realm_id = DatumGetInt32(ts_store_value(0, LOOKUP_REALM_ID, &isnull));
	realm->name = MemoryContextStrdup(session->caller_context, realm_name);
	realm->login = DatumGetObjectId(ts_store_value(0, LOOKUP_LOGIN, &isnull));
	if (isnull)
		realm->login = InvalidOid;
	realm->validate = DatumGetObjectId(ts_store_value(0, LOOKUP_VALIDATE, &isnull));
	if (isnull)
		realm->validate = InvalidOid;
	realm->registered_by = DatumGetObjectId(ts_store_value(0, LOOKUP_REGISTERED_BY, &isnull));
	propagation = ts_store_text(session, 0, LOOKUP_PROPAGATION);
	realm->propagation = strcmp(propagation, "required") == 0 ?
		TURNSTILE_REQUIRED : TURNSTILE_REQUIRES_NEW;
	realm->changed_here =
		TransactionIdIsCurrentTransactionId(DatumGetTransactionId(ts_store_value(0, LOOKUP_REALM_XMIN, &isnull)));

	cached->exists = DatumGetBool(ts_store_value(0, LOOKUP_EXISTS, &isnull));
	cached->credential = ts_store_text(session, 0, LOOKUP_CREDENTIAL);
	cached->invalidated = DatumGetBool(ts_store_value(0, LOOKUP_INVALIDATED, &isnull)) && !isnull;
	cached->fresh = DatumGetBool(ts_store_value(0, LOOKUP_FRESH, &isnull)) && !isnull;
	cached->usable = DatumGetBool(ts_store_value(0, LOOKUP_USABLE, &isnull)) && !isnull;
	cached->version = DatumGetInt64(ts_store_value(0, LOOKUP_VERSION, &isnull));
	if (isnull)
		cached->version = 0;
	cached->changed_here = cached->exists &&
		TransactionIdIsCurrentTransactionId(DatumGetTransactionId(ts_store_value(0, LOOKUP_XMIN, &isnull)));
	cached->blocked = DatumGetBool(ts_store_value(0, LOOKUP_BLOCKED, &isnull)) && !isnull;
	cached->last_error = ts_store_text(session, 0, LOOKUP_LAST_ERROR);
	cached->last_sqlstate = ts_store_text(session, 0, LOOKUP_LAST_SQLSTATE);
	cached->blocked_until = ts_store_text(session, 0, LOOKUP_BLOCKED_UNTIL);
	realm->search_path = ts_store_text(session, 0, LOOKUP_SEARCH_PATH);
	realm->login_signature = ts_store_text(session, 0, LOOKUP_LOGIN_SIGNATURE);
	realm->validate_signature = ts_store_text(session, 0, LOOKUP_VALIDATE_SIGNATURE);
	cached->writer = cached->exists ?
		ts_xact_writing(DatumGetTransactionId(ts_store_value(0, LOOKUP_XMAX, &isnull)), snapshot) :
		InvalidTransactionId;

	/* only a credential that exists and was not invalidated can be used */
	if (cached->credential == NULL || cached->invalidated)
		cached->fresh = cached->usable = false;

	if (!ts_realm_accessible(session->saved_userid, realm->realm_id,
							 realm->registered_by, snapshot))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied for realm \"%s\"", realm_name),
				 errhint("The realm's owner can allow it with turnstile.realm_grant.")));
}

/*
 * The same, with a snapshot the isolation policy names, taken for the read.
 */
void
ts_credential_read_now(TsStoreSession *session, const char *realm_name, int64 user_id,
					   TsRealm *realm, TsCredential *cached)
{
	Snapshot	snapshot = ts_policy_snapshot();

	ts_credential_read(session, realm_name, user_id, snapshot, realm, cached);
	ts_policy_release(snapshot);
}

/*
 * Raise the failure a recent refresh recorded, while retry_after holds off
 * new attempts: its SQLSTATE, and when the next attempt is allowed.
 */
void
ts_credential_raise_recorded_failure(const TsRealm *realm, int64 user_id,
									 const TsCredential *cached)
{
	const char *sqlstate = cached->last_sqlstate;
	int			sqlerrcode = ERRCODE_EXTERNAL_ROUTINE_EXCEPTION;

	/* the column is text: use it only if it holds a well-formed SQLSTATE */
	if (sqlstate && strlen(sqlstate) == 5 &&
		strspn(sqlstate, "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ") == 5)
		sqlerrcode = MAKE_SQLSTATE(sqlstate[0], sqlstate[1], sqlstate[2],
								   sqlstate[3], sqlstate[4]);

	ereport(ERROR,
			(errcode(sqlerrcode),
			 errmsg("refresh of user " INT64_FORMAT " in realm \"%s\" failed recently; next attempt after %s",
					user_id, realm->name, cached->blocked_until),
			 errdetail("The last attempt failed: %s",
					   cached->last_error ? cached->last_error : "(no message)"),
			 errhint("The realm's retry_after sets how long a failure holds off new attempts; credential_set stores a credential at once.")));
}

void
ts_credential_require_writable(int64 user_id, const char *realm_name)
{
	ts_require_writable("the credential of user " INT64_FORMAT " in realm \"%s\"",
						user_id, realm_name);
}

/*
 * With the user's lock held, take the policy's snapshot and read the state
 * again.  Under "repeatable read", raise 40001 if the state changed after
 * the caller's snapshot.  Returns the snapshot to write with.
 */
Snapshot
ts_credential_read_locked(TsStoreSession *session, const char *realm_name,
						  int64 user_id, TsRealm *realm, TsCredential *cached)
{
	Snapshot	snapshot;

	snapshot = ts_policy_snapshot();
	ts_credential_read(session, realm_name, user_id, snapshot, realm, cached);
	ts_credential_check_unchanged(session, realm_name, user_id, cached);
	/* a row that an open transaction is inserting holds the user too */
	if (!cached->exists)
		cached->writer = ts_credential_inserting(realm->realm_id, user_id);
	return snapshot;
}

/*
 * Take the user's exclusive lock and read the state under it, once no open
 * transaction holds the user through its row (see keylock.c): if one does,
 * give the lock back, wait for it to end, and start over.  Returns the
 * snapshot to write with; *lock says whether this call took the lock.
 */
Snapshot
ts_credential_lock_exclusive(TsStoreSession *session, const char *realm_name,
							 int64 user_id, TsRealm *realm, TsCredential *cached,
							 TsLockResult *lock)
{
	for (;;)
	{
		Snapshot	snapshot;

		*lock = ts_lock_credential(realm->realm_id, user_id, ExclusiveLock, true, realm_name);
		snapshot = ts_credential_read_locked(session, realm_name, user_id, realm, cached);
		if (!TransactionIdIsValid(cached->writer))
			return snapshot;
		ts_policy_release(snapshot);
		if (*lock == TS_LOCK_ACQUIRED)
			ts_unlock_credential(realm->realm_id, user_id, ExclusiveLock);
		ts_credential_wait_writer(realm->realm_id, user_id, cached->writer, realm_name);
	}
}

/*
 * The end of a call that wrote a user's row under the exclusive lock it
 * took: the row holds the user from now on, so the lock goes.
 */
void
ts_credential_unlock_written(const TsRealm *realm, int64 user_id, TsLockResult lock)
{
	if (lock == TS_LOCK_ACQUIRED && ts_keys_held_by_rows())
		ts_unlock_credential(realm->realm_id, user_id, ExclusiveLock);
}

/*
 * Record a failed refresh for a user: count it, keep its message and
 * SQLSTATE, and hold off new attempts for the realm's retry_after.
 */
void
ts_credential_record_failure(const char *realm_name, int64 user_id, ErrorData *failure)
{
	Datum		args[4] = {
		CStringGetTextDatum(realm_name), Int64GetDatum(user_id),
		CStringGetTextDatum(failure->message ? failure->message : ""),
		CStringGetTextDatum(unpack_sql_state(failure->sqlerrcode))
	};
	TsStoreSession session;

	ts_store_open(&session);
	ts_store_exec(&ts_stmt_record_failure, args, NULL, InvalidSnapshot, false);
	ts_store_close(&session);
}

/*
 * A new credential ($3), valid from now; $4 and $5 are added to the login
 * and validation counts.
 */
static TsStatement ts_stmt_replace = {
	"UPDATE turnstile.credential"
	"   SET credential = $3, invalidated = false,"
	"       issued_at = t.now, validated_at = t.now,"
	"       logins = logins OPERATOR(pg_catalog.+) $4,"
	"       validations = validations OPERATOR(pg_catalog.+) $5,"
	"       failures = 0, last_error = NULL, last_sqlstate = NULL, failed_at = NULL,"
	"       version = version OPERATOR(pg_catalog.+) 1"
	"  FROM (SELECT pg_catalog.clock_timestamp() AS now) t"
	" WHERE realm_id OPERATOR(pg_catalog.=) $1 AND user_id OPERATOR(pg_catalog.=) $2",
	5, {INT4OID, INT8OID, TEXTOID, INT8OID, INT8OID}
};

static TsStatement ts_stmt_insert = {
	"INSERT INTO turnstile.credential"
	"       (realm_id, user_id, credential, issued_at, validated_at, logins, validations)"
	" SELECT $1, $2, $3, t.now, t.now, $4, $5"
	"   FROM (SELECT pg_catalog.clock_timestamp() AS now) t",
	5, {INT4OID, INT8OID, TEXTOID, INT8OID, INT8OID}
};

/*
 * Store a credential as valid from now, adding to the login and validation
 * counts.  exists says whether the user's row is there already (the caller
 * read it under the user's lock, so it cannot have changed since).
 */
void
ts_credential_store(const TsRealm *realm, int64 user_id, bool exists,
					const char *credential, int logins, int validations,
					Snapshot snapshot)
{
	Datum		args[5] = {
		Int32GetDatum(realm->realm_id), Int64GetDatum(user_id),
		CStringGetTextDatum(credential), Int64GetDatum(logins),
		Int64GetDatum(validations)
	};

	ts_store_exec(exists ? &ts_stmt_replace : &ts_stmt_insert, args, NULL,
				  snapshot, false);
}

/*
 * Under "repeatable read", raise 40001 if the user's state as read with the
 * caller's snapshot is not its latest committed state: the caller would act
 * on (or be handed) a credential that was replaced meanwhile.
 */
void
ts_credential_check_unchanged(TsStoreSession *session, const char *realm_name,
							  int64 user_id, TsCredential *cached)
{
	if (!ts_policy_uses_latest())
	{
		Snapshot	latest_snapshot = ts_latest_snapshot();
		TsRealm		latest_realm;
		TsCredential latest;

		ts_credential_read(session, realm_name, user_id, latest_snapshot,
						   &latest_realm, &latest);
		ts_policy_release(latest_snapshot);
		/* who holds the user is a matter of the latest state */
		cached->writer = latest.writer;
		if (latest.version != cached->version)
			ts_policy_report_conflict(psprintf("credential of user " INT64_FORMAT " in realm \"%s\"",
											   user_id, realm_name),
									  "changed", "credential changed");
	}
}
