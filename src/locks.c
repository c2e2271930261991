/*-------------------------------------------------------------------------
 *
 * locks.c
 *	  key_holders(), which the turnstile.locks view reads to show the keys
 *	  that open transactions hold through their rows (keylock.c).
 *
 *-------------------------------------------------------------------------
 */
#include "relaccess.h"

#include "access/heapam.h"
#include "access/subtrans.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "executor/executor.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "storage/procarray.h"
#include "utils/builtins.h"
#include "utils/snapmgr.h"

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
	ts_relaccess_lookup();
	for (int table = 0; table < 2; table++)
	{
		bool		counters = table == 0;
		Relation	rel = ts_relaccess_open(counters ? &ts_rels.counter_slot : &ts_rels.credential,
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

