/*-------------------------------------------------------------------------
 *
 * async_commit.c
 *	  A transaction whose only writes were rate_limit's commits without
 *	  waiting for its WAL to reach disk, as with synchronous_commit = off.
 *
 * A rate limit is a guard, not a ledger.  Most of what a call made in its
 * own transaction costs is the commit's wait for its WAL flush (and, with
 * synchronous replication, for the standby), longer than everything the
 * call itself does.  So a transaction that wrote nothing but rate_limit's
 * rows commits asynchronously: PostgreSQL's synchronous_commit = off, for
 * that one commit.  That is PostgreSQL's own trade and it keeps its
 * guarantees: the rows stay WAL-logged, replicated and crash-safe, and a
 * crash can forget only the calls of the last moments before it (at most
 * three times wal_writer_delay, the calls of transactions whose commit
 * record had not been flushed), each whole, as if it had rolled back.  A
 * key then allows a few calls more in the window the crash fell in.
 *
 * Anything else the transaction wrote, before, between or after its calls,
 * keeps the commit as synchronous_commit says, so nothing else a caller
 * writes is ever made less durable.  turnstile.rate_limit_synchronous_commit
 * = on makes rate-limit-only transactions follow synchronous_commit too.
 *
 * "Wrote nothing else" is read off the WAL.  XactLastRecEnd, the end of the
 * last record the backend's transaction wrote, stays 0 until the
 * transaction writes one and then moves with every record it writes.  So
 * the first call must find it at 0; every later call, and the commit, must
 * find it where the previous call left it.  A write that skips WAL goes to
 * an unlogged or temporary table, which a crash empties anyway, or to a
 * table created in the transaction under wal_level = minimal, whose
 * creation wrote WAL outside the calls.  The rule errs on the side of
 * waiting: a read can write WAL too, when it prunes a page it reads, and
 * one between the calls keeps the commit synchronous.  (A page pruned
 * inside a call is not the caller's data; losing that record loses
 * nothing.)  A call on a table that is not as the extension made it (a
 * trigger, a rule, row security, another column or index: whatever makes
 * rate_limit write through SQL for that reason) may have run the caller's
 * code inside the call, so it too keeps the commit synchronous.
 *
 * Another library's pre-commit callback runs after this one if it was
 * registered first, and may write WAL after the check: the commit then
 * flushes that WAL before the caller hears of it (it does not wait for a
 * synchronous standby, though).
 *
 *-------------------------------------------------------------------------
 */
#include "turnstile.h"

#include "access/xact.h"
#include "access/xlog.h"
#include "executor/instrument.h"
#include "utils/guc.h"

bool		turnstile_rate_limit_synchronous_commit = false;

/*
 * Per transaction: did it call rate_limit; has it written nothing else; and,
 * once the commit was made asynchronous, how many WAL records there were.
 */
static bool ts_counted = false;
static bool ts_counted_only = false;
static XLogRecPtr ts_counted_end = InvalidXLogRecPtr;	/* XactLastRecEnd after
														 * the last call */
static bool ts_made_async = false;
static int64 ts_records_at_check = 0;
static bool ts_callback_registered = false;

/*
 * At pre-commit, while synchronous_commit can still change what
 * RecordTransactionCommit does, turn it off for this commit if the
 * transaction wrote only through rate_limit.  The change is a SET LOCAL: the
 * commit's end undoes it, as it undoes the caller's own SET LOCAL; should
 * it be refused, the commit just stays synchronous.  At the commit, WAL that
 * a later pre-commit callback wrote besides the commit record is flushed.
 * Every end of the transaction forgets the calls.
 */
static void
ts_async_commit_callback(XactEvent event, void *arg)
{
	switch (event)
	{
		case XACT_EVENT_PRE_COMMIT:
			if (ts_counted && ts_counted_only && XactLastRecEnd == ts_counted_end &&
				!turnstile_rate_limit_synchronous_commit &&
				synchronous_commit > SYNCHRONOUS_COMMIT_OFF &&
				set_config_option("synchronous_commit", "off",
								  PGC_USERSET, PGC_S_SESSION, GUC_ACTION_LOCAL,
								  true, WARNING, false) > 0)
			{
				ts_made_async = true;
				ts_records_at_check = pgWalUsage.wal_records;
			}
			break;
		case XACT_EVENT_COMMIT:
			/* (the commit wrote one record, its own) */
			if (ts_made_async && pgWalUsage.wal_records > ts_records_at_check + 1)
				XLogFlush(XactLastCommitEnd);
			ts_counted = ts_counted_only = ts_made_async = false;
			ts_counted_end = InvalidXLogRecPtr;
			break;
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PREPARE:
			ts_counted = ts_counted_only = ts_made_async = false;
			ts_counted_end = InvalidXLogRecPtr;
			break;
		default:
			break;
	}
}

/*
 * A rate_limit call is about to write: note whether the transaction wrote
 * any WAL since the last call (or, for the first, at all).  The setting is
 * read here too, so that a function's SET clause for it counts.
 */
void
ts_async_commit_before_count(void)
{
	if (!ts_callback_registered)
	{
		RegisterXactCallback(ts_async_commit_callback, NULL);
		ts_callback_registered = true;
	}
	if (!ts_counted)
	{
		ts_counted = true;
		ts_counted_only = XactLastRecEnd == InvalidXLogRecPtr;
	}
	else if (XactLastRecEnd != ts_counted_end)
		ts_counted_only = false;
	if (turnstile_rate_limit_synchronous_commit)
		ts_counted_only = false;
}

/*
 * The call found its table altered, and may run the caller's code (a
 * trigger, a rule) as it writes: the transaction's commit stays
 * synchronous.
 */
void
ts_async_commit_forget(void)
{
	ts_counted_only = false;
}

/*
 * The call has written its row: what the WAL holds up to here is the
 * calls'.  A call that fails before this leaves its records unaccounted
 * for, and the commit synchronous.
 */
void
ts_async_commit_after_count(void)
{
	ts_counted_end = XactLastRecEnd;
}
