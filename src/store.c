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
#include "turnstile.h"

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
#include "utils/syscache.h"

/*
 * The role the tables belong to: the owner of the turnstile schema, which
 * CREATE EXTENSION created together with them.  Every call needs it, so it is
 * remembered per backend and forgotten when any schema changes (ALTER
 * EXTENSION ... OWNER, DROP and CREATE EXTENSION).
 */
static Oid	ts_owner_cached = InvalidOid;
static bool ts_owner_callback_registered = false;

static void
ts_store_forget_owner(Datum arg, int cacheid, uint32 hashvalue)
{
	ts_owner_cached = InvalidOid;
}

Oid
ts_store_owner(void)
{
	Oid			nspid;
	HeapTuple	tuple;

	if (OidIsValid(ts_owner_cached))
		return ts_owner_cached;

	if (!ts_owner_callback_registered)
	{
		CacheRegisterSyscacheCallback(NAMESPACEOID, ts_store_forget_owner, (Datum) 0);
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
 * Become the tables' owner and connect to SPI.
 */
void
ts_store_open(TsStoreSession *session)
{
	Oid			owner = ts_store_owner();

	session->caller_context = CurrentMemoryContext;
	GetUserIdAndSecContext(&session->saved_userid, &session->saved_sec_context);
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
	SetUserIdAndSecContext(role, sec_context & ~SECURITY_RESTRICTED_OPERATION);
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
		SPIPlanPtr	plan = SPI_prepare(stmt->sql, stmt->nargs, stmt->argtypes);

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
 * One column of one row of the last result.
 */
Datum
ts_store_value(int row, int col, bool *isnull)
{
	return SPI_getbinval(SPI_tuptable->vals[row], SPI_tuptable->tupdesc,
						 col, isnull);
}

/*
 * A copy of a text column of the last result, in the memory of the function
 * that opened the store session (SPI's memory goes at ts_store_close).
 * NULL if the column is null.
 */
char *
ts_store_text(TsStoreSession *session, int row, int col)
{
	char	   *value = SPI_getvalue(SPI_tuptable->vals[row], SPI_tuptable->tupdesc, col);

	return value ? MemoryContextStrdup(session->caller_context, value) : NULL;
}

/*
 * Run a statement and return all its rows as the result of a
 * materialize-mode set-returning function; the statement's columns must
 * match the function's result type.
 */
void
ts_store_materialize(FunctionCallInfo fcinfo, TsStatement *stmt, Snapshot snapshot)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	int			rows = ts_store_exec(stmt, NULL, NULL, snapshot, true);
	int			natts = rsinfo->setDesc->natts;
	Datum	   *values = palloc(natts * sizeof(Datum));
	bool	   *nulls = palloc(natts * sizeof(bool));

	for (int row = 0; row < rows; row++)
	{
		for (int col = 0; col < natts; col++)
			values[col] = ts_store_value(row, col + 1, &nulls[col]);
		/* the tuplestore copies the values, so SPI's memory may go after */
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
}

/*
 * Refuse to change state in a read-only transaction, which includes every
 * transaction on a standby, with a message that says what would change.
 */
void
ts_require_writable(const char *what)
{
	if (XactReadOnly)
		ereport(ERROR,
				(errcode(ERRCODE_READ_ONLY_SQL_TRANSACTION),
				 errmsg("cannot change %s in a read-only transaction", what),
				 RecoveryInProgress() ?
				 errhint("This server is a standby; make the change on the primary.") : 0));
}

/*
 * Raise 22004 for a NULL argument, naming it.
 */
void
ts_require_arg(bool isnull, const char *argname)
{
	if (isnull)
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("argument \"%s\" must not be null", argname)));
}

/*
 * Check a name argument (a counter's or a realm's: 1 to
 * TURNSTILE_NAME_MAX_CHARS characters) and return it as a C string, with its
 * length in bytes if len is given.  what names it in the error.
 */
char *
ts_name_arg(Datum arg, const char *what, int *len)
{
	text	   *name = DatumGetTextPP(arg);
	int			bytes = VARSIZE_ANY_EXHDR(name);
	int			chars = pg_mbstrlen_with_len(VARDATA_ANY(name), bytes);

	if (chars < 1 || chars > TURNSTILE_NAME_MAX_CHARS)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s name must have 1 to %d characters", what, TURNSTILE_NAME_MAX_CHARS),
				 errdetail("The name given has %d characters.", chars)));

	if (len)
		*len = bytes;
	return text_to_cstring(name);
}
