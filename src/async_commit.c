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
 * nothing.)
 *
 *-------------------------------------------------------------------------
 */
#include "turnstile.h"

#include "access/xact.h"
#include "access/xlog.h"
#include "utils/guc.h"

bool		turnstile_rate_limit_synchronous_commit = false;

/* Per transaction: did it call rate_limit, and has it written nothing else? */
static bool ts_counted;
static bool ts_counted_only;
static XLogRecPtr ts_counted_end;	/* XactLastRecEnd after the last call */
static bool ts_callback_registered = false;

/*
 * At pre-commit, while synchronous_commit can still change what
 * RecordTransactionCommit does, turn it off for this commit if the
 * transaction wrote only through rate_limit.  The change is a SET LOCAL: the
 * commit's end undoes it, as it undoes the caller's own SET LOCAL.  Every
 * end of the transaction forgets the calls.
 */
static void
ts_async_commit_callback(XactEvent event, void *arg)
{
	switch (event)
	{
		case XACT_EVENT_PRE_COMMIT:
			if (ts_counted && ts_counted_only && XactLastRecEnd == ts_counted_end &&
				!turnstile_rate_limit_synchronous_commit &&
				synchronous_commit > SYNCHRONOUS_COMMIT_OFF)
				(void) set_config_option("synchronous_commit", "off",
										 PGC_USERSET, PGC_S_SESSION, GUC_ACTION_LOCAL,
										 true, 0, false);
			break;
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PREPARE:
			ts_counted = false;
			break;
		default:
			break;
	}
}

/*
 * A rate_limit call is about to write: note whether the transaction wrote
 * any WAL since the last call (or, for the first, at all).
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
