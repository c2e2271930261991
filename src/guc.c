/*-------------------------------------------------------------------------
 *
 * guc.c
 *	  Module entry point and the turnstile.* settings.
 *
 * Nothing here needs shared_preload_libraries: the settings are defined when
 * the library is first loaded by a call to one of its functions (or by
 * session_preload_libraries), and a value set before that is kept as a
 * placeholder and picked up by DefineCustomEnumVariable.
 *
 *-------------------------------------------------------------------------
 */
#include "turnstile.h"

#include "fmgr.h"
#include "utils/guc.h"

PG_MODULE_MAGIC;

int			turnstile_isolation = TURNSTILE_READ_COMMITTED;
int			turnstile_hot_slots_max = TURNSTILE_SLOTS_MAX;

static const struct config_enum_entry ts_isolation_options[] = {
	{"read committed", TURNSTILE_READ_COMMITTED, false},
	{"repeatable read", TURNSTILE_REPEATABLE_READ, false},
	{"serializable", TURNSTILE_SERIALIZABLE, false},
	{NULL, 0, false}
};

void		_PG_init(void);

/*
 * Define the settings.  Each concern of the extension that needs start-up
 * work gets one initialiser call here.
 */
void
_PG_init(void)
{
	DefineCustomEnumVariable("turnstile.isolation",
							 "How turnstile functions read the state of their key: \"read committed\" (latest committed state), \"repeatable read\" or \"serializable\" (the transaction's snapshot).",
							 NULL,
							 &turnstile_isolation,
							 TURNSTILE_READ_COMMITTED,
							 ts_isolation_options,
							 PGC_USERSET,
							 0,
							 NULL, NULL, NULL);

	/*
	 * Superuser-only, like the server's own settings that trade one
	 * session's choice against everyone's: a counter's slot count is shared
	 * by every backend that uses it.
	 */
	DefineCustomIntVariable("turnstile.hot_slots_max",
							"The most slots a hot counter grows to when an increment finds all of them busy; a counter created with more keeps them.",
							"A counter does not grow past this; its own slot count or less turns growth off for it.",
							&turnstile_hot_slots_max,
							TURNSTILE_SLOTS_MAX,
							1, TURNSTILE_SLOTS_MAX,
							PGC_SUSET,
							0,
							NULL, NULL, NULL);

	MarkGUCPrefixReserved("turnstile");
}
