/*-------------------------------------------------------------------------
 *
 * provider.c
 *	  Calling a realm's login and validate functions.
 *
 * A realm's functions belong to its login service, and run as the role that
 * registered the realm: never as the caller of credential_get, and never as
 * the extension's owner unless that is who registered it.  That role must
 * still be allowed to execute them when they are called.
 *
 * They also run with the search_path that role had when it registered the
 * realm, with pg_temp forced last.  Otherwise the caller's search_path, or a
 * temporary table of the caller's, could put the caller's own objects (a
 * table with a trigger, say) in the path of code running with the registering
 * role's rights.
 *
 * A failure inside them reaches the caller with its own SQLSTATE, detail and
 * hint, a message that says which user and realm it was for, and a context
 * line that says it happened inside the realm's function.  Catching the error
 * without a subtransaction is safe here only because it is raised again at
 * once: nothing runs in between but building the new report, and the
 * transaction's abort does all the clean-up the original error would have.
 *
 *-------------------------------------------------------------------------
 */
#include "relaccess.h"

#include "catalog/pg_proc.h"
#include "catalog/pg_type.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/regproc.h"
#include "utils/lsyscache.h"
#include "utils/syscache.h"
#include "utils/varlena.h"

/* One call of a realm's function, and what it returned. */
typedef struct TsProviderCall
{
	const TsRealm *realm;
	int64		user_id;
	const char *role_of_function;	/* "login" or "validate" */
	Oid			function;		/* InvalidOid: it no longer exists */
	const char *signature;		/* as registered */
	const char *credential;		/* validate's second argument */
	Datum		result;
	bool		isnull;
} TsProviderCall;

/*
 * Does a function have the shape of a login function (user_id bigint) ->
 * text, or with validate, of a validate function (user_id bigint,
 * credential text) -> boolean?  A plain function, not an aggregate, window
 * function or procedure, returning one value.
 */
bool
ts_provider_signature_fits(Oid function, bool validate)
{
	HeapTuple	tuple = SearchSysCache1(PROCOID, ObjectIdGetDatum(function));
	Form_pg_proc proc;
	bool		fits;

	if (!HeapTupleIsValid(tuple))
		return false;
	proc = (Form_pg_proc) GETSTRUCT(tuple);
	fits = proc->prokind == PROKIND_FUNCTION && !proc->proretset &&
		proc->pronargs == (validate ? 2 : 1) &&
		proc->prorettype == (validate ? BOOLOID : TEXTOID) &&
		proc->proargtypes.values[0] == INT8OID &&
		(!validate || proc->proargtypes.values[1] == TEXTOID);
	ReleaseSysCache(tuple);
	return fits;
}

/*
 * The errdetail that says which signature a login or validate function needs.
 */
int
ts_provider_signature_detail(bool validate)
{
	return validate ?
		errdetail("A validate function takes (user_id bigint, credential text) and returns boolean.") :
		errdetail("A login function takes (user_id bigint) and returns text.");
}

static void
ts_provider_error_context(void *arg)
{
	TsProviderCall *call = (TsProviderCall *) arg;

	errcontext("%s function %s of realm \"%s\", for user " INT64_FORMAT,
			   call->role_of_function, call->signature,
			   call->realm->name, call->user_id);
}

/*
 * The realm's search_path with pg_temp last.  A pg_temp the registering role
 * had named earlier in it is taken out: there it would put the caller's
 * temporary tables and functions ahead of the role's own objects, and a
 * trigger on such a table would run with the role's rights.
 */
static char *
ts_provider_search_path(const TsRealm *realm)
{
	char	   *raw = pstrdup(realm->search_path);
	List	   *names;
	ListCell   *lc;
	StringInfoData path;

	if (!SplitIdentifierString(raw, ',', &names))
		ts_relaccess_altered("realm",
							 psprintf("The search_path of realm \"%s\" is not a list of names: \"%s\".",
									  realm->name, realm->search_path));
	initStringInfo(&path);
	foreach(lc, names)
	{
		const char *name = lfirst(lc);

		if (strcmp(name, "pg_temp") != 0)
			appendStringInfo(&path, "%s, ", quote_identifier(name));
	}
	appendStringInfoString(&path, "pg_temp");
	return path.data;
}

/*
 * The body of a provider call, run as the realm's registering role, with the
 * realm's search_path until the call returns (an error unwinds the setting
 * with the transaction).
 */
static void
ts_provider_invoke(void *arg)
{
	TsProviderCall *call = (TsProviderCall *) arg;
	FmgrInfo	flinfo;
	LOCAL_FCINFO(fcinfo, 2);
	int			nargs = call->credential ? 2 : 1;
	int			guc_nestlevel = NewGUCNestLevel();

	(void) set_config_option("search_path", ts_provider_search_path(call->realm),
							 PGC_USERSET, PGC_S_SESSION, GUC_ACTION_SAVE,
							 true, 0, false);

	fmgr_info(call->function, &flinfo);
	InitFunctionCallInfoData(*fcinfo, &flinfo, nargs, InvalidOid, NULL, NULL);
	fcinfo->args[0].value = Int64GetDatum(call->user_id);
	fcinfo->args[0].isnull = false;
	if (call->credential)
	{
		fcinfo->args[1].value = CStringGetTextDatum(call->credential);
		fcinfo->args[1].isnull = false;
	}
	call->result = FunctionCallInvoke(fcinfo);
	call->isnull = fcinfo->isnull;

	/*
	 * Undo every setting the function changed, not only search_path, as
	 * index_build does after running index functions: a login is another
	 * role's code, and a set_config(..., false) in it would otherwise stay
	 * in the caller's session ("required") or in a pool worker's, for every
	 * later refresh it serves.
	 */
	AtEOXact_GUC(false, guc_nestlevel);
}

/*
 * Call a realm function as the realm's role; errors are reported as failures
 * of that user's login or validation in that realm.
 */
static void
ts_provider_call(TsProviderCall *call)
{
	ErrorContextCallback context;
	MemoryContext caller_context = CurrentMemoryContext;
	Oid			role = call->realm->registered_by;

	context.callback = ts_provider_error_context;
	context.arg = call;
	context.previous = error_context_stack;
	error_context_stack = &context;

	if (!OidIsValid(call->function) ||
		!SearchSysCacheExists1(PROCOID, ObjectIdGetDatum(call->function)))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_FUNCTION),
				 errmsg("%s function %s of realm \"%s\" no longer exists",
						call->role_of_function, call->signature, call->realm->name),
				 errhint("Register the realm again with turnstile.realm_set.")));

	/*
	 * The function was checked when the realm was registered, but it is
	 * looked up by signature again on every call, and whoever owns it may
	 * have replaced it since (DROP and CREATE with another return type, or an
	 * aggregate of the same name).  Reading its result as text or boolean
	 * when it is something else would crash or lie, so check again.
	 */
	if (!ts_provider_signature_fits(call->function, call->credential != NULL))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_FUNCTION_DEFINITION),
				 errmsg("%s function %s of realm \"%s\" no longer has the signature of a %s function",
						call->role_of_function, format_procedure(call->function),
						call->realm->name, call->role_of_function),
				 ts_provider_signature_detail(call->credential != NULL),
				 errhint("Fix the function, or register the realm again with turnstile.realm_set.")));
	if (!OidIsValid(role) ||
		!SearchSysCacheExists1(AUTHOID, ObjectIdGetDatum(role)))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("the role that registered realm \"%s\" no longer exists",
						call->realm->name),
				 errdetail("A realm's functions run as the role that registered it."),
				 errhint("Register the realm again with turnstile.realm_set.")));
	if (!DatumGetBool(DirectFunctionCall3(has_function_privilege_id_id,
										  ObjectIdGetDatum(role),
										  ObjectIdGetDatum(call->function),
										  CStringGetTextDatum("EXECUTE"))))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("role \"%s\", which registered realm \"%s\", may not execute its %s function",
						GetUserNameFromId(role, false), call->realm->name,
						call->role_of_function)));

	PG_TRY();
	{
		ts_store_run_as(role, ts_provider_invoke, call);
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(caller_context);
		edata = CopyErrorData();
		if (edata->elevel > ERROR || edata->sqlerrcode == ERRCODE_QUERY_CANCELED)
			PG_RE_THROW();
		FlushErrorState();

		/* edata->context already holds every context line, ours included */
		error_context_stack = NULL;
		ereport(ERROR,
				(errcode(edata->sqlerrcode),
				 errmsg("%s of user " INT64_FORMAT " in realm \"%s\" failed: %s",
						call->role_of_function, call->user_id,
						call->realm->name, edata->message),
				 edata->detail ? errdetail_internal("%s", edata->detail) : 0,
				 edata->hint ? errhint("%s", edata->hint) : 0,
				 edata->context ? errcontext("%s", edata->context) : 0));
	}
	PG_END_TRY();

	error_context_stack = context.previous;
}

/* Raise the error for a login that returned no credential: what says what. */
static void
ts_login_returned_nothing(const TsRealm *realm, int64 user_id, const char *what)
{
	ereport(ERROR,
			(errcode(ERRCODE_E_R_I_E_NULL_VALUE_NOT_ALLOWED),
			 errmsg("login of user " INT64_FORMAT " in realm \"%s\" returned %s",
					user_id, realm->name, what),
			 errdetail("Login function %s must return a credential or raise an error.",
					   realm->login_signature)));
}

/*
 * Ask the realm's login function for a fresh credential for a user.  A NULL
 * or empty answer is an error: there is nothing to cache.
 */
char *
ts_provider_login(const TsRealm *realm, int64 user_id)
{
	TsProviderCall call = {
		.realm = realm,.user_id = user_id,.role_of_function = "login",
		.function = realm->login,.signature = realm->login_signature
	};
	text	   *result;
	char	   *credential;

	ts_provider_call(&call);
	if (call.isnull)
		ts_login_returned_nothing(realm, user_id, "NULL");
	result = DatumGetTextPP(call.result);

	/*
	 * A function in C or an internal one can return text that is not valid
	 * in the database's encoding, or that holds a zero byte; stored, it would
	 * break every later read and pg_dump.
	 */
	if (!pg_verifymbstr(VARDATA_ANY(result), VARSIZE_ANY_EXHDR(result), true))
		ereport(ERROR,
				(errcode(ERRCODE_CHARACTER_NOT_IN_REPERTOIRE),
				 errmsg("login of user " INT64_FORMAT " in realm \"%s\" returned a credential that is not valid %s",
						user_id, realm->name, GetDatabaseEncodingName()),
				 errdetail("Login function %s must return text in the database's encoding.",
						   realm->login_signature)));
	credential = text_to_cstring(result);
	if (credential[0] == '\0')
		ts_login_returned_nothing(realm, user_id, "an empty credential");
	return credential;
}

/*
 * Ask the realm's validate function whether a credential still works.  NULL
 * counts as "no": the credential is replaced by a new login.
 */
bool
ts_provider_validate(const TsRealm *realm, int64 user_id, const char *credential)
{
	TsProviderCall call = {
		.realm = realm,.user_id = user_id,.role_of_function = "validate",
		.function = realm->validate,.signature = realm->validate_signature,
		.credential = credential
	};

	ts_provider_call(&call);
	return !call.isnull && DatumGetBool(call.result);
}
