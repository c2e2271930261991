/*-------------------------------------------------------------------------
 *
 * store.c
 *	  Access to the extension's tables through prepared SPI plans.
 *
 * The tables are readable by their owner only, so that the functions are the
 * one way in.  A call therefore switches to the owner of the turnstile schema
 * for the duration of its SPI work, the way a SECURITY DEFINER function would,
 * but without the per-call cost of a function-level SET clause.  The switch
 * is marked as a restricted operation, and transaction abort restores the
 * caller's identity if an error escapes.
 *
 * Every statement text is fully qualified (tables, functions and operators),
 * so no search_path, whatever the caller set, can redirect it.  Plans are
 * prepared on first use in a backend and kept for the backend's life; the
 * plan cache revalidates them when the tables change.
 *
 *-------------------------------------------------------------------------
 */
#include "relaccess.h"

#include "access/htup_details.h"
#include "access/xact.h"
#include "access/xlog.h"
#include "catalog/namespace.h"
#include "catalog/pg_namespace.h"
#include "funcapi.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/syscache.h"

/*
 * The security context of the caller of the innermost open store session.
 * A realm's function runs with the caller's SECURITY_RESTRICTED_OPERATION
 * bit (see ts_store_run_as), but by then the store session has set that bit
 * for itself, so the caller's own is kept here.  Sessions nest (a login
 * function may call credential_get for another user): each keeps the outer
 * value in its TsStoreSession and puts it back when it closes.  An error
 * that escapes a session leaves a stale value, which is harmless: only code
 * inside an open session reads it, and opening one sets it.
 */
static int	ts_store_caller_sec_context = 0;

/*
 * Is the caller of the innermost open store session inside a
 * security-restricted operation?
 */
bool
ts_store_caller_restricted(void)
{
	return (ts_store_caller_sec_context & SECURITY_RESTRICTED_OPERATION) != 0;
}

/*
 * Become the tables' owner and connect to SPI.
 */
void
ts_store_open(TsStoreSession *session)
{
	Oid			owner;

	/* every call starts here: check the tables' shape (relaccess) first */
	ts_relaccess_lookup();
	owner = ts_tables_owner();
	session->caller_context = CurrentMemoryContext;
	GetUserIdAndSecContext(&session->saved_userid, &session->saved_sec_context);
	session->outer_caller_sec_context = ts_store_caller_sec_context;
	ts_store_caller_sec_context = session->saved_sec_context;
	SetUserIdAndSecContext(owner,
						   session->saved_sec_context |
						   SECURITY_LOCAL_USERID_CHANGE |
						   SECURITY_RESTRICTED_OPERATION);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
}

/*
 * Run a function as the given role, from inside a store session, and become
 * the tables' owner again afterwards (an error restores the identity at
 * abort).  Used for a realm's login and validate functions.
 */
void
ts_store_run_as(Oid role, void (*body) (void *), void *arg)
{
	Oid			owner;
	int			sec_context;

	GetUserIdAndSecContext(&owner, &sec_context);

	/*
	 * The store session marked itself restricted; the realm's function may
	 * do what its caller could (create a temporary table, say), but no more:
	 * inside a security-restricted operation of the caller (CREATE INDEX,
	 * REFRESH MATERIALIZED VIEW, ANALYZE running an expression), it stays
	 * restricted, as fmgr_security_definer keeps that bit too.
	 */
	SetUserIdAndSecContext(role,
						   (sec_context & ~SECURITY_RESTRICTED_OPERATION) |
						   (ts_store_caller_sec_context & SECURITY_RESTRICTED_OPERATION));
	body(arg);
	SetUserIdAndSecContext(owner, sec_context);
}

/*
 * Disconnect from SPI and become the caller again.  Results that must
 * outlive this call have to be copied out before.
 */
void
ts_store_close(TsStoreSession *session)
{
	SPI_finish();
	SetUserIdAndSecContext(session->saved_userid, session->saved_sec_context);
	ts_store_caller_sec_context = session->outer_caller_sec_context;
}

/*
 * Run a statement with the given snapshot (InvalidSnapshot: the active one)
 * and return the number of rows it produced or changed.
 */
int
ts_store_exec(TsStatement *stmt, Datum *values, const char *nulls,
			  Snapshot snapshot, bool read_only)
{
	int			rc;

	if (stmt->plan == NULL)
	{
		/*
		 * Every statement reads or writes the rows of one key, found through
		 * an index whatever the key: a custom plan would only be the same
		 * plan, made again on every call.  (The plan cache makes custom
		 * plans while it judges the generic one costlier, which a table that
		 * grows within one statement, as in a bulk load, can keep it
		 * judging.)
		 */
		SPIPlanPtr	plan = SPI_prepare_cursor(stmt->sql, stmt->nargs, stmt->argtypes,
											  stmt->replan ? CURSOR_OPT_CUSTOM_PLAN :
											  CURSOR_OPT_GENERIC_PLAN);

		if (plan == NULL)
			elog(ERROR, "SPI_prepare failed for \"%s\": %s",
				 stmt->sql, SPI_result_code_string(SPI_result));
		if (SPI_keepplan(plan) != 0)
			elog(ERROR, "SPI_keepplan failed");
		stmt->plan = plan;
	}

	if (snapshot != InvalidSnapshot)
		rc = SPI_execute_snapshot(stmt->plan, values, nulls, snapshot,
								  InvalidSnapshot, read_only, true, 0);
	else
		rc = SPI_execute_plan(stmt->plan, values, nulls, read_only, 0);

	if (rc < 0)
		elog(ERROR, "SPI failed for \"%s\": %s", stmt->sql,
			 SPI_result_code_string(rc));
	return (int) SPI_processed;
}

/*
 * Row row of the last result.  Callers check the row count ts_store_exec
 * returned; a row that is not there is an internal error here rather than a
 * read of memory SPI never filled.
 */
static HeapTuple
ts_store_row(int row)
{
	if (SPI_tuptable == NULL || row < 0 || (uint64) row >= SPI_processed)
		elog(ERROR, "pg_turnstile asked for row %d of a result of " UINT64_FORMAT " rows",
			 row, SPI_tuptable ? SPI_processed : 0);
	return SPI_tuptable->vals[row];
}

/*
 * One column of one row of the last result.
 */
Datum
ts_store_value(int row, int col, bool *isnull)
{
	return SPI_getbinval(ts_store_row(row), SPI_tuptable->tupdesc, col, isnull);
}

/*
 * A copy of a text column of the last result, in the memory of the function
 * that opened the store session (SPI's memory goes at ts_store_close).
 * NULL if the column is null.
 */
char *
ts_store_text(TsStoreSession *session, int row, int col)
{
	char	   *value = SPI_getvalue(ts_store_row(row), SPI_tuptable->tupdesc, col);

	return value ? MemoryContextStrdup(session->caller_context, value) : NULL;
}

/*
 * Check that a function's row type (desc) still has exactly these column
 * types, leaving aside dropped columns.  The type is one of the extension's
 * composite types, which ALTER TYPE can change; its values are built for the
 * shape the extension created, so any other shape is an error (55000) that
 * names it, not a write past an array.
 */
void
ts_check_row_desc(FunctionCallInfo fcinfo, TupleDesc desc, int ncols, const Oid *types)
{
	int			col = 0;
	bool		fits = true;

	for (int att = 0; att < desc->natts && fits; att++)
	{
		if (TupleDescAttr(desc, att)->attisdropped)
			continue;
		fits = col < ncols && TupleDescAttr(desc, att)->atttypid == types[col];
		col++;
	}
	if (!fits || col != ncols)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("the result type of %s was altered", get_func_name(fcinfo->flinfo->fn_oid)),
				 errdetail("It must have the %d columns the extension created it with.", ncols),
				 errhint("The extension's types must stay as it created them; reinstall the extension.")));
}

/* The same for the row type of a materialize-mode set-returning function. */
void
ts_check_row_type(FunctionCallInfo fcinfo, int ncols, const Oid *types)
{
	ts_check_row_desc(fcinfo, ((ReturnSetInfo *) fcinfo->resultinfo)->setDesc, ncols, types);
}

/*
 * Spread values and nulls, in the order of a row type's live columns, over
 * all its columns (arrays of desc->natts, palloc'd): a dropped column gets a
 * null.
 */
static void
ts_spread_row(TupleDesc desc, const Datum *values, const bool *nulls,
			  Datum **all_values, bool **all_nulls)
{
	int			col = 0;

	*all_values = palloc(desc->natts * sizeof(Datum));
	*all_nulls = palloc(desc->natts * sizeof(bool));
	for (int att = 0; att < desc->natts; att++)
	{
		(*all_values)[att] = TupleDescAttr(desc, att)->attisdropped ? (Datum) 0 : values[col];
		(*all_nulls)[att] = TupleDescAttr(desc, att)->attisdropped || nulls[col++];
	}
}

/*
 * Add one row of values to a materialize-mode result whose type
 * ts_check_row_type accepted (see ts_spread_row).
 */
void
ts_put_row(FunctionCallInfo fcinfo, const Datum *values, const bool *nulls)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	Datum	   *all_values;
	bool	   *all_nulls;

	ts_spread_row(rsinfo->setDesc, values, nulls, &all_values, &all_nulls);
	tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, all_values, all_nulls);
	pfree(all_values);
	pfree(all_nulls);
}

/*
 * The row a function returns, of a type ts_check_row_desc accepted (see
 * ts_spread_row); desc must be blessed.
 */
Datum
ts_form_row(TupleDesc desc, const Datum *values, const bool *nulls)
{
	Datum	   *all_values;
	bool	   *all_nulls;

	ts_spread_row(desc, values, nulls, &all_values, &all_nulls);
	return HeapTupleGetDatum(heap_form_tuple(desc, all_values, all_nulls));
}

/*
 * Run a statement and return all its rows as the result of a
 * materialize-mode set-returning function; the statement's columns are the
 * function's result columns, which are checked against them.
 */
void
ts_store_materialize(FunctionCallInfo fcinfo, TsStatement *stmt, Snapshot snapshot)
{
	int			rows = ts_store_exec(stmt, NULL, NULL, snapshot, true);
	TupleDesc	spi_desc = SPI_tuptable->tupdesc;
	int			ncols = spi_desc->natts;
	Oid		   *types = palloc(ncols * sizeof(Oid));
	Datum	   *values = palloc(ncols * sizeof(Datum));
	bool	   *nulls = palloc(ncols * sizeof(bool));

	for (int col = 0; col < ncols; col++)
		types[col] = TupleDescAttr(spi_desc, col)->atttypid;
	ts_check_row_type(fcinfo, ncols, types);
	for (int row = 0; row < rows; row++)
	{
		for (int col = 0; col < ncols; col++)
			values[col] = ts_store_value(row, col + 1, &nulls[col]);
		/* the tuplestore copies the values, so SPI's memory may go after */
		ts_put_row(fcinfo, values, nulls);
	}
}
