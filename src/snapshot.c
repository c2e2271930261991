/*-------------------------------------------------------------------------
 *
 * snapshot.c
 *	  The isolation policy: which snapshot a turnstile call reads its key with.
 *
 * A turnstile call first locks its key (keylock.c) and then reads the key's
 * rows.  What it reads them with is chosen by turnstile.isolation:
 *
 * "read committed" (the default) reads with a snapshot taken *after* the
 * key's lock was granted and after every other transaction that wrote the
 * key's rows has ended (a writer gives the lock back when its call returns,
 * and its rows hold the key until it ends; the caller waits for it, see
 * keylock.c).  A transaction's commit is visible to new snapshots before
 * its waiters wake, so this snapshot shows the latest committed state of
 * the key plus the calling transaction's own changes.  Because no
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

/* turnstile.isolation (guc.c) */
int			turnstile_isolation = TURNSTILE_READ_COMMITTED;

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
 * Raise 40001 for a key that changed after the caller's snapshot was taken,
 * under "repeatable read" or "serializable".  subject names the key
 * ("counter \"c\""), verb says what happened to it ("changed"), and
 * happened says it again for the detail ("counter changed").
 */
void
ts_policy_report_conflict(const char *subject, const char *verb, const char *happened)
{
	ereport(ERROR,
			(errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
			 errmsg("%s was %s by a concurrent transaction", subject, verb),
			 errdetail("turnstile.isolation is \"%s\" and the %s after this transaction's snapshot was taken.",
					   turnstile_isolation == TURNSTILE_SERIALIZABLE ?
					   "serializable" : "repeatable read", happened),
			 errhint("Retry the transaction.")));
}

/*
 * The isolation level a refresh worker's transaction runs at: the one
 * turnstile.isolation asks of its callers.
 */
int
ts_policy_xact_isolation(void)
{
	switch (turnstile_isolation)
	{
		case TURNSTILE_SERIALIZABLE:
			return XACT_SERIALIZABLE;
		case TURNSTILE_REPEATABLE_READ:
			return XACT_REPEATABLE_READ;
		default:
			return XACT_READ_COMMITTED;
	}
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
