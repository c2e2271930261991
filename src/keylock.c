/*-------------------------------------------------------------------------
 *
 * keylock.c
 *	  Per-key heavyweight locks: one per counter, one per hot-counter slot,
 *	  one per (realm, user) credential.
 *
 * Every turnstile key is serialized by a transaction-scoped lock in the
 * regular lock manager, so waits show up in pg_locks, honour lock_timeout,
 * take part in deadlock detection and disappear at commit or abort (which is
 * also what makes the extension safe behind transaction poolers).
 *
 * The locks use the advisory lock tag, because that is the one tag whose
 * fields an extension may fill as it likes, and it is shown in pg_locks as
 * (database, classid, objid, objsubid).  PostgreSQL's own advisory lock
 * functions put 1 (one bigint key) or 2 (two int4 keys) into the last field;
 * turnstile puts its own kind numbers there, so no application advisory key,
 * whatever its value, can ever name the same lock as a turnstile key.
 *
 * Lock modes on a counter's key:
 *
 *	ExclusiveLock	held by everything that needs the one exact value of a
 *					counter: create, set, drop, compare-and-set, and every
 *					increment of a plain counter.
 *	ShareLock		held by increments of a hot counter.  They do not conflict
 *					with each other; each also holds the ExclusiveLock of the
 *					one slot it updates.  A compare-and-set therefore waits
 *					until every in-flight increment has committed or aborted,
 *					and holds off new ones until it ends.
 *
 * Lock modes on a user's credential:
 *
 *	ExclusiveLock	held by the one caller that refreshes the credential, and
 *					by credential_set and credential_invalidate.
 *	ShareLock		waited for by callers that found someone refreshing, so
 *					that all of them wake together when the refresher ends;
 *					released as soon as they have read the result.
 *
 *-------------------------------------------------------------------------
 */
#include "turnstile.h"

#include "common/hashfn.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "access/transam.h"
#include "access/xact.h"
#include "storage/lmgr.h"
#include "storage/lock.h"
#include "storage/procarray.h"
#include "nodes/makefuncs.h"
#include "parser/parse_func.h"
#include "utils/inval.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"
#include "utils/elog.h"

/*
 * Kind numbers in the last field of the lock tag (see pg_locks.objsubid).
 * A user's credential lock carries its realm id in the low 15 bits of its
 * kind, and the 64-bit user id whole in the two key fields, so two different
 * users never share a lock.
 */
#define TS_LOCK_KIND_COUNTER		0x5401
#define TS_LOCK_KIND_COUNTER_SLOT	0x5402
#define TS_LOCK_KIND_REALM_REGISTRY	0x5403
#define TS_LOCK_KIND_COUNTER_GROWTH	0x5404
#define TS_LOCK_KIND_IDEMPOTENCY_KEY	0x5405
#define TS_LOCK_KIND_CREDENTIAL		0x8000

/*
 * The 64-bit key of a counter name.  Two names with the same key would merely
 * share a lock; with 64 bits that does not happen in practice.
 */
uint64
ts_counter_key(const char *name, int len)
{
	return hash_bytes_extended((const unsigned char *) name, len, 0);
}

static inline void
ts_counter_locktag(LOCKTAG *tag, uint64 key)
{
	SET_LOCKTAG_ADVISORY(*tag, MyDatabaseId, (uint32) (key >> 32),
						 (uint32) key, TS_LOCK_KIND_COUNTER);
}

/*
 * A slot lock keeps the high half of the counter key, so that turnstile.locks
 * can decode it, and puts the slot number in the low half.
 */
static inline void
ts_slot_locktag(LOCKTAG *tag, uint64 key, int slot)
{
	SET_LOCKTAG_ADVISORY(*tag, MyDatabaseId, (uint32) (key >> 32),
						 (uint32) slot, TS_LOCK_KIND_COUNTER_SLOT);
}

/* What a lock protects, for error messages; only one of the fields is set. */
typedef struct TsLockTarget
{
	const char *counter;
	const char *realm;			/* with user_id */
	int64		user_id;
	const char *idempotency_key;
	const char *other;
} TsLockTarget;

static char *
ts_lock_target_describe(const TsLockTarget *target)
{
	if (target->counter)
		return psprintf("counter \"%s\"", target->counter);
	if (target->realm)
		return psprintf("the credential of user " INT64_FORMAT " in realm \"%s\"",
						target->user_id, target->realm);
	if (target->idempotency_key)
		return psprintf("idempotency key \"%s\"", target->idempotency_key);
	return pstrdup(target->other);
}

/*
 * Wait for a lock, turning a lock_timeout into an error that names the key.
 *
 * ts_lock_wait first tries the lock without waiting, so the uncontended
 * path pays for neither the PG_TRY set-up nor the error handling;
 * ts_lock_wait_queued is for a caller that tried already.  When the wait is
 * cut by lock_timeout, the lock manager has already left the wait queue
 * cleanly; we only replace the generic message with one that says which counter it was
 * and raise it at once, so the transaction's abort does the usual clean-up.
 */
/*
 * In a PG_CATCH block around a lock wait: a lock_timeout becomes an error
 * that names the key; any other error goes on as it was.
 */
static void
ts_rethrow_naming(MemoryContext caller_context, const TsLockTarget *target)
{
	ErrorData  *edata;

	MemoryContextSwitchTo(caller_context);
	edata = CopyErrorData();
	if (edata->sqlerrcode != ERRCODE_LOCK_NOT_AVAILABLE)
		PG_RE_THROW();
	FlushErrorState();
	ereport(ERROR,
			(errcode(ERRCODE_LOCK_NOT_AVAILABLE),
			 errmsg("could not lock %s within lock_timeout",
					ts_lock_target_describe(target)),
			 errdetail("Another transaction holds its turnstile lock."),
			 errhint("Raise lock_timeout, or look up the holder in turnstile.locks.")));
}

static LockAcquireResult
ts_lock_wait_queued(const LOCKTAG *tag, LOCKMODE mode, const TsLockTarget *target)
{
	MemoryContext caller_context = CurrentMemoryContext;
	LockAcquireResult result;

	PG_TRY();
	{
		result = LockAcquire(tag, mode, false, false);
	}
	PG_CATCH();
	{
		ts_rethrow_naming(caller_context, target);
	}
	PG_END_TRY();

	return result;
}

static LockAcquireResult
ts_lock_wait(const LOCKTAG *tag, LOCKMODE mode, const TsLockTarget *target)
{
	LockAcquireResult result = LockAcquire(tag, mode, false, true);

	if (result != LOCKACQUIRE_NOT_AVAIL)
		return result;
	return ts_lock_wait_queued(tag, mode, target);
}

/*
 * Lock a counter's key in the given mode until the end of the transaction.
 */
void
ts_lock_counter(uint64 key, LOCKMODE mode, const char *name)
{
	LOCKTAG		tag;
	TsLockTarget target = {.counter = name};

	ts_counter_locktag(&tag, key);
	(void) ts_lock_wait(&tag, mode, &target);
}

/*
 * Lock a counter's key only if that needs no wait; says whether it did.
 */
bool
ts_try_lock_counter(uint64 key, LOCKMODE mode)
{
	LOCKTAG		tag;

	ts_counter_locktag(&tag, key);
	return LockAcquire(&tag, mode, false, true) != LOCKACQUIRE_NOT_AVAIL;
}

/*
 * Give back one acquisition of a counter's lock, for a caller that wrote
 * nothing under it.  LockRelease undoes one acquisition only, so a lock this
 * transaction held before stays held.
 */
void
ts_unlock_counter(uint64 key, LOCKMODE mode)
{
	LOCKTAG		tag;

	ts_counter_locktag(&tag, key);
	LockRelease(&tag, mode, false);
}

/* What a LockAcquire call means to a caller that may already hold the lock. */
static TsLockResult
ts_lock_result(LockAcquireResult result)
{
	switch (result)
	{
		case LOCKACQUIRE_NOT_AVAIL:
			return TS_LOCK_NOT_AVAILABLE;
		case LOCKACQUIRE_OK:
			return TS_LOCK_ACQUIRED;
		default:
			return TS_LOCK_ALREADY_HELD;
	}
}

/*
 * A hot counter's growth lock (see grow.c): an increment that asks for the
 * counter to grow tries it without waiting and keeps it to the end of its
 * transaction; the worker that grows the counter waits for it.
 */
static inline void
ts_growth_locktag(LOCKTAG *tag, uint64 key)
{
	SET_LOCKTAG_ADVISORY(*tag, MyDatabaseId, (uint32) (key >> 32),
						 (uint32) key, TS_LOCK_KIND_COUNTER_GROWTH);
}

TsLockResult
ts_try_lock_counter_growth(uint64 key)
{
	LOCKTAG		tag;

	ts_growth_locktag(&tag, key);
	return ts_lock_result(LockAcquire(&tag, ExclusiveLock, false, true));
}

/* Give back a growth lock that ts_try_lock_counter_growth took. */
void
ts_unlock_counter_growth(uint64 key)
{
	LOCKTAG		tag;

	ts_growth_locktag(&tag, key);
	LockRelease(&tag, ExclusiveLock, false);
}

void
ts_lock_counter_growth(uint64 key)
{
	LOCKTAG		tag;
	TsLockTarget target = {.other = "a hot counter's growth"};

	ts_growth_locktag(&tag, key);
	(void) ts_lock_wait(&tag, ExclusiveLock, &target);
}

static inline void
ts_credential_locktag(LOCKTAG *tag, int realm_id, int64 user_id)
{
	Assert(realm_id >= 1 && realm_id <= TURNSTILE_REALM_ID_MAX);
	SET_LOCKTAG_ADVISORY(*tag, MyDatabaseId, (uint32) ((uint64) user_id >> 32),
						 (uint32) user_id, TS_LOCK_KIND_CREDENTIAL | realm_id);
}

/*
 * Lock one user's credential in a realm until the end of the transaction, or
 * with wait = false, only try.  Says whether this call took the lock, or this
 * transaction already held it.  Refreshers and writers take ExclusiveLock;
 * callers that only wait for a refresher to finish take ShareLock, so that
 * they all wake at once when it ends.
 */
TsLockResult
ts_lock_credential(int realm_id, int64 user_id, LOCKMODE mode, bool wait,
				   const char *realm)
{
	LOCKTAG		tag;
	TsLockTarget target = {.realm = realm,.user_id = user_id};
	LockAcquireResult result;

	ts_credential_locktag(&tag, realm_id, user_id);
	if (wait)
		result = ts_lock_wait(&tag, mode, &target);
	else
		result = LockAcquire(&tag, mode, false, true);

	return ts_lock_result(result);
}

/*
 * Release a user's lock before the end of the transaction: only a lock this
 * call took, and only once nothing it protected can still roll back.
 */
void
ts_unlock_credential(int realm_id, int64 user_id, LOCKMODE mode)
{
	LOCKTAG		tag;

	ts_credential_locktag(&tag, realm_id, user_id);
	LockRelease(&tag, mode, false);
}

/*
 * Keys held through their rows.
 *
 * A key's lock is held only while a call reads and writes the key's rows;
 * once they are written, the rows themselves hold the key until the writing
 * transaction ends, as PostgreSQL's row locks do: an updated or deleted row
 * carries the writer's xid in its xmax, an inserted one in its xmin.  So a
 * transaction holds a handful of lock-table entries however many keys it
 * changes.  A call that finds, under the key's lock, a row written by a
 * transaction still in progress gives the key's lock back, waits for that
 * transaction to end, and starts over: it then reads what the writer
 * committed, or finds it rolled back, exactly as if it had waited for a lock
 * held to the writer's end.  Waits are on the writer's transaction lock, so
 * they show in pg_locks, honour lock_timeout and take part in deadlock
 * detection like any lock wait.
 */

/*
 * Whether the installed SQL objects are of a version (1.3 on) whose
 * turnstile.locks shows the keys held through rows: only then may a call
 * give its key's lock back when it returns.  Until ALTER EXTENSION UPDATE
 * has run, locks last to the end of the transaction, as the installed view
 * expects.  Asked once per backend, and again after any change to pg_proc.
 */
static int	ts_rows_hold_keys = -1;	/* -1: not known yet */
static bool ts_rows_hold_keys_callback = false;

static void
ts_forget_rows_hold_keys(Datum arg, int cacheid, uint32 hashvalue)
{
	ts_rows_hold_keys = -1;
}

bool
ts_keys_held_by_rows(void)
{
	if (likely(ts_rows_hold_keys >= 0))
		return ts_rows_hold_keys;
	if (!ts_rows_hold_keys_callback)
	{
		CacheRegisterSyscacheCallback(PROCOID, ts_forget_rows_hold_keys, (Datum) 0);
		ts_rows_hold_keys_callback = true;
	}
	ts_rows_hold_keys =
		OidIsValid(LookupFuncName(list_make2(makeString("turnstile"),
											 makeString("key_holders")),
								  0, NULL, true));
	return ts_rows_hold_keys;
}

/*
 * The transaction, other than this one, that wrote a row version the
 * snapshot shows (its raw xmax) and holds the key: one still in progress, or
 * one that committed after the snapshot was taken (the version is no longer
 * the latest: the caller must read again, and waiting for it costs
 * nothing).  Invalid if none: no xmax, this transaction's own, an aborted
 * one, or one that committed before the snapshot, which can only have
 * locked the row, since its update would have hidden the version.
 */
TransactionId
ts_xact_writing(TransactionId xmax, Snapshot snapshot)
{
	if (!TransactionIdIsNormal(xmax) || TransactionIdIsCurrentTransactionId(xmax))
		return InvalidTransactionId;
	if (TransactionIdIsInProgress(xmax))
		return xmax;
	if (XidInMVCCSnapshot(xmax, snapshot) && TransactionIdDidCommit(xmax))
		return xmax;
	return InvalidTransactionId;
}

/*
 * Wait for a transaction that holds a key through its rows.  While waiting,
 * hold the key's lock in AccessShareLock, which no turnstile lock mode
 * conflicts with, so that turnstile.locks can tell which key the wait is
 * for; a lock_timeout becomes an error that names the key.
 */
static void
ts_wait_for_writer(const LOCKTAG *tag, TransactionId xid, const TsLockTarget *target)
{
	MemoryContext caller_context = CurrentMemoryContext;

	(void) LockAcquire(tag, AccessShareLock, false, false);
	PG_TRY();
	{
		XactLockTableWait(xid, NULL, NULL, XLTW_None);
	}
	PG_CATCH();
	{
		ts_rethrow_naming(caller_context, target);
	}
	PG_END_TRY();
	LockRelease(tag, AccessShareLock, false);
}

void
ts_counter_wait_writer(uint64 key, TransactionId xid, const char *name)
{
	LOCKTAG		tag;
	TsLockTarget target = {.counter = name};

	ts_counter_locktag(&tag, key);
	ts_wait_for_writer(&tag, xid, &target);
}

/* The same for one slot of a hot counter, whose row the writer holds. */
void
ts_counter_slot_wait_writer(uint64 key, int slot, TransactionId xid, const char *name)
{
	LOCKTAG		tag;
	TsLockTarget target = {.counter = name};

	ts_slot_locktag(&tag, key, slot);
	ts_wait_for_writer(&tag, xid, &target);
}

void
ts_credential_wait_writer(int realm_id, int64 user_id, TransactionId xid,
						  const char *realm)
{
	LOCKTAG		tag;
	TsLockTarget target = {.realm = realm,.user_id = user_id};

	ts_credential_locktag(&tag, realm_id, user_id);
	ts_wait_for_writer(&tag, xid, &target);
}

/*
 * An idempotency key's lock (see counter_once.c): held by the one call that
 * found the key unused, from that moment until the key's row is in the
 * table; from then on the row holds the key.  The 64-bit key is a hash of
 * the key text: two keys with the same hash would merely share a lock.
 */
static inline void
ts_idempotency_locktag(LOCKTAG *tag, uint64 key)
{
	SET_LOCKTAG_ADVISORY(*tag, MyDatabaseId, (uint32) (key >> 32),
						 (uint32) key, TS_LOCK_KIND_IDEMPOTENCY_KEY);
}

uint64
ts_idempotency_key_hash(const char *key)
{
	return hash_bytes_extended((const unsigned char *) key, strlen(key), 0);
}

void
ts_lock_idempotency_key(uint64 key, const char *name)
{
	LOCKTAG		tag;
	TsLockTarget target = {.idempotency_key = name};

	ts_idempotency_locktag(&tag, key);
	(void) ts_lock_wait(&tag, ExclusiveLock, &target);
}

void
ts_unlock_idempotency_key(uint64 key)
{
	LOCKTAG		tag;

	ts_idempotency_locktag(&tag, key);
	LockRelease(&tag, ExclusiveLock, false);
}

/* Wait for the transaction whose row holds an idempotency key. */
void
ts_idempotency_key_wait_writer(uint64 key, TransactionId xid, const char *name)
{
	LOCKTAG		tag;
	TsLockTarget target = {.idempotency_key = name};

	ts_idempotency_locktag(&tag, key);
	ts_wait_for_writer(&tag, xid, &target);
}

/*
 * Try one slot's lock of a hot counter, without waiting.
 */
bool
ts_try_lock_counter_slot(uint64 key, int slot)
{
	LOCKTAG		tag;

	ts_slot_locktag(&tag, key, slot);
	return LockAcquire(&tag, ExclusiveLock, false, true) != LOCKACQUIRE_NOT_AVAIL;
}

/*
 * Wait until a slot's lock is free (a call holds it only while it runs),
 * and give it back at once.
 */
void
ts_wait_counter_slot(uint64 key, int slot, const char *name)
{
	LOCKTAG		tag;
	TsLockTarget target = {.counter = name};

	ts_slot_locktag(&tag, key, slot);
	(void) ts_lock_wait(&tag, ExclusiveLock, &target);
	LockRelease(&tag, ExclusiveLock, false);
}

/*
 * Give back one slot's lock.
 */
void
ts_unlock_counter_slot(uint64 key, int slot)
{
	LOCKTAG		tag;

	ts_slot_locktag(&tag, key, slot);
	LockRelease(&tag, ExclusiveLock, false);
}

/*
 * Serialize changes to the set of realms (realm ids are allocated from it).
 */
void
ts_lock_realm_registry(void)
{
	LOCKTAG		tag;
	TsLockTarget target = {.other = "the realm registry"};

	SET_LOCKTAG_ADVISORY(tag, MyDatabaseId, 0, 0, TS_LOCK_KIND_REALM_REGISTRY);
	(void) ts_lock_wait(&tag, ExclusiveLock, &target);
}
