/*-------------------------------------------------------------------------
 *
 * guc.c
 *	  Module entry point and the turnstile.* settings.
 *
 * This is the top of the layering (see turnstile.h): _PG_init defines the
 * settings and calls each module's initialiser.  A setting's variable lives
 * with the code it governs, so that nothing below reaches up here for it.
 *
 * Nothing here needs shared_preload_libraries: the settings are defined when
 * the library is first loaded by a call to one of its functions (or by
 * session_preload_libraries), and a value set before that is kept as a
 * placeholder and picked up by DefineCustomEnumVariable.  Preloading adds
 * the refresh pool (pool.c), whose settings only matter then.
 *
 *-------------------------------------------------------------------------
 */
#include "turnstile.h"

#include "fmgr.h"
#include "miscadmin.h"
#include "utils/guc.h"

PG_MODULE_MAGIC;

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

	/*
	 * Sizes the pool's shared memory, so fixed at server start; and a
	 * PGC_POSTMASTER setting can only be defined while preloading.
	 */
	if (process_shared_preload_libraries_in_progress)
		DefineCustomIntVariable("turnstile.refresh_workers",
								"The most refresh pool workers at once, over all databases (only with pg_turnstile in shared_preload_libraries).",
								"Each takes a slot of max_worker_processes while it runs.",
								&turnstile_refresh_workers,
								4,
								1, 64,
								PGC_POSTMASTER,
								0,
								NULL, NULL, NULL);

	DefineCustomIntVariable("turnstile.refresh_worker_idle_time",
							"How long a refresh pool worker waits for work before it exits.",
							NULL,
							&turnstile_refresh_worker_idle_time,
							60,
							1, 86400,
							PGC_SIGHUP,
							GUC_UNIT_S,
							NULL, NULL, NULL);

	/*
	 * Superuser-only: every session removes the keys older than its own
	 * window, whoever made them, so a session that could shorten it would
	 * make everyone's retries apply again.  GRANT SET ON PARAMETER lets a
	 * role set it.
	 */
	DefineCustomStringVariable("turnstile.idempotency_window",
							   "How long counter_incr_once remembers an idempotency key after the call that applied it.",
							   "A retry with a key older than this applies the increment again. Every session removes the keys older than its own window, so all sessions that share keys should use one.",
							   &turnstile_idempotency_window,
							   "24 hours",
							   PGC_SUSET,
							   0,
							   ts_idempotency_window_check,
							   ts_idempotency_window_assign,
							   NULL);

	/*
	 * Anyone may choose it: it only chooses, for the caller's own
	 * transactions, what synchronous_commit, which anyone may set, chooses.
	 */
	DefineCustomBoolVariable("turnstile.rate_limit_synchronous_commit",
							 "Whether a transaction whose only writes were rate_limit calls waits for its commit's WAL flush as synchronous_commit says.",
							 "Off: such a transaction commits as with synchronous_commit = off, and a crash can forget the calls counted in its last moments. A transaction that wrote anything else always commits as synchronous_commit says.",
							 &turnstile_rate_limit_synchronous_commit,
							 false,
							 PGC_USERSET,
							 0,
							 NULL, NULL, NULL);

	MarkGUCPrefixReserved("turnstile");

	ts_counter_slot_init();
	ts_credential_state_init();
	ts_pool_init();
}
