/*-------------------------------------------------------------------------
 *
 * args.c
 *	  Argument checks shared by the SQL-callable functions.
 *
 * Every function checks its arguments before it touches anything: a NULL
 * where a value is needed is 22004 naming the argument, a name out of range
 * 22023, a change in a read-only transaction 25006.  So bad input changes
 * nothing.
 *
 *-------------------------------------------------------------------------
 */
#include "turnstile.h"

#include "access/xact.h"
#include "access/xlog.h"
#include "mb/pg_wchar.h"
#include "utils/builtins.h"

/*
 * Refuse to change state in a read-only transaction, which includes every
 * transaction on a standby, with a message that says what would change
 * (formatted from fmt).  Called through ts_require_writable, which checks
 * XactReadOnly first, so the message is only formatted when it is raised.
 */
void
ts_refuse_read_only(const char *fmt,...)
{
	StringInfoData what;

	initStringInfo(&what);
	for (;;)
	{
		va_list		args;
		int			needed;

		va_start(args, fmt);
		needed = appendStringInfoVA(&what, fmt, args);
		va_end(args);
		if (needed == 0)
			break;
		enlargeStringInfo(&what, needed);
	}
	ereport(ERROR,
			(errcode(ERRCODE_READ_ONLY_SQL_TRANSACTION),
			 errmsg("cannot change %s in a read-only transaction", what.data),
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
