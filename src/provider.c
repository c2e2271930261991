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
#include "turnstile.h"

#include "catalog/pg_type.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/regproc.h"
#include "utils/lsyscache.h"
#include "utils/syscache.h"

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

static void
ts_provider_error_context(void *arg)
{
	TsProviderCall *call = (TsProviderCall *) arg;

	errcontext("%s function %s of realm \"%s\", for user " INT64_FORMAT,
			   call->role_of_function, call->signature,
			   call->realm->name, call->user_id);
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

	(void) set_config_option("search_path",
							 psprintf("%s, pg_temp", call->realm->search_path),
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

	AtEOXact_GUC(true, guc_nestlevel);
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
	char	   *credential;

	ts_provider_call(&call);
	if (call.isnull)
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_NULL_VALUE_NOT_ALLOWED),
				 errmsg("login of user " INT64_FORMAT " in realm \"%s\" returned NULL",
						user_id, realm->name),
				 errdetail("Login function %s must return a credential or raise an error.",
						   realm->login_signature)));
	credential = TextDatumGetCString(call.result);
	if (credential[0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_NULL_VALUE_NOT_ALLOWED),
				 errmsg("login of user " INT64_FORMAT " in realm \"%s\" returned an empty credential",
						user_id, realm->name),
				 errdetail("Login function %s must return a credential or raise an error.",
						   realm->login_signature)));
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
