/*-------------------------------------------------------------------------
 *
 * snapshot.c
 *	  The isolation policy: which snapshot a turnstile call reads its key with.
 *
 * A turnstile call first locks its key (keylock.c) and then reads the key's
 * rows.  What it reads them with is chosen by turnstile.isolation:
 *
 * "read committed" (the default) reads with a snapshot taken *after* the
 * key's lock was granted.  Every other writer of the key holds that lock
 * until it commits, and a transaction's commit is visible to new snapshots
 * before its locks are released, so this snapshot shows the latest committed
 * state of the key plus the calling transaction's own changes.  Because no
 * other transaction can change the rows between that snapshot and our update,
 * the update never meets a concurrently updated row, which is what would make
 * a REPEATABLE READ or SERIALIZABLE caller fail with 40001.
 *
 * Readers without the lock (counter_get, counter_info, the views) take a
 * fresh snapshot too.  They must: once a REPEATABLE READ transaction has
 * updated a row that it found with a newer snapshot, its own transaction
 * snapshot sees two versions of that row: the one that was current when the
 * snapshot was taken (its deleter committed later, so is invisible) and the
 * transaction's own new version.  A plain SELECT with the transaction snapshot
 * would count such a counter twice.
 *
 * "repeatable read" reads with the calling query's snapshot (in a REPEATABLE
 * READ or SERIALIZABLE transaction, the transaction snapshot).  A writer
 * compares what that snapshot shows with the latest committed state, and if
 * the key changed after the snapshot was taken, raises 40001 naming the key;
 * so a repeated counter_get returns the same value throughout a transaction.
 *
 * "serializable" is "repeatable read" for SERIALIZABLE transactions only;
 * reading with the transaction snapshot lets the serializable machinery see
 * what the call read.
 *
 *-------------------------------------------------------------------------
 */
#include "turnstile.h"

#include "access/xact.h"
#include "utils/snapmgr.h"

/*
 * Refuse "serializable" outside a SERIALIZABLE transaction, and any call in
 * parallel mode: the functions are PARALLEL UNSAFE, but a wrapper wrongly
 * marked PARALLEL SAFE could still bring them there.
 */
void
ts_policy_check_level(void)
{
	if (IsInParallelMode())
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_TRANSACTION_STATE),
				 errmsg("turnstile functions cannot run in parallel mode"),
				 errhint("Do not call them from a function marked PARALLEL SAFE or RESTRICTED.")));
	if (turnstile_isolation == TURNSTILE_SERIALIZABLE && !IsolationIsSerializable())
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_TRANSACTION_STATE),
				 errmsg("turnstile.isolation \"serializable\" requires a SERIALIZABLE transaction"),
				 errdetail("The current transaction runs at a lower isolation level."),
				 errhint("Use BEGIN ISOLATION LEVEL SERIALIZABLE, or set turnstile.isolation to \"read committed\".")));
}

/*
 * True when calls act on the latest committed state.
 */
bool
ts_policy_uses_latest(void)
{
	return turnstile_isolation == TURNSTILE_READ_COMMITTED;
}

/*
 * The calling statement's snapshot, in a private copy that also sees what
 * this transaction wrote up to now.  The statement's own snapshot stops at
 * the command that started it, so a second call in one statement (SELECT
 * counter_incr(...) FROM generate_series(1, 3)) would not see the first
 * call's update, and would take the counter for changed by someone else.
 */
static Snapshot
ts_statement_snapshot(void)
{
	Snapshot	snapshot;

	PushCopiedSnapshot(GetActiveSnapshot());
	UpdateActiveSnapshotCommandId();
	snapshot = RegisterSnapshot(GetActiveSnapshot());
	PopActiveSnapshot();
	return snapshot;
}

/*
 * The snapshot to read a key with under the current policy.  Call it after
 * the key's lock is granted.  The result is registered; give it back with
 * ts_policy_release.
 */
Snapshot
ts_policy_snapshot(void)
{
	ts_policy_check_level();

	if (ts_policy_uses_latest())
		return ts_latest_snapshot();

	return ts_statement_snapshot();
}

/*
 * A registered snapshot of the latest committed state, whatever the policy;
 * "repeatable read" compares it with the caller's snapshot.
 */
Snapshot
ts_latest_snapshot(void)
{
	ts_policy_check_level();
	return RegisterSnapshot(GetLatestSnapshot());
}

void
ts_policy_release(Snapshot snapshot)
{
	UnregisterSnapshot(snapshot);
}
