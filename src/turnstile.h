/*-------------------------------------------------------------------------
 *
 * turnstile.h
 *	  Private declarations shared by the pg_turnstile C sources.
 *
 * Vocabulary used throughout the sources:
 *
 *	key		the thing a call serializes on: one counter name, or one
 *			(realm, user id) pair.  A call holds the key's heavyweight
 *			lock while it runs; the rows it wrote hold the key until its
 *			transaction ends (see keylock.c).
 *	slot	one row of a counter.  A plain counter has one slot; a hot
 *			counter has several, so that concurrent increments update
 *			different rows and do not queue behind one row lock.
 *	policy	how a call reads the state of its key: from the latest committed
 *			state, or from the calling transaction's snapshot (snapshot.c,
 *			chosen by the turnstile.isolation setting).
 *	store	the extension's tables, reached through prepared SPI plans that
 *			run as the extension's owner (store.c).
 *
 * Layers.  A file calls only into files of its own layer or of lower ones,
 * and no files call each other in a circle; scripts/layers checks both on
 * the object files, with this table:
 *
 *	0	args.c	argument and read-only checks
 *	0	async_commit.c	a transaction that wrote only through rate_limit commits without waiting for its WAL flush
 *	0	snapshot.c	the isolation policy's snapshots, its setting, the 40001 report
 *	0	keylock.c	lock tags and waits, for keys and for the transactions holding them
 *	0	relaccess.c	the extension's tables read directly: their OIDs and columns, checked; opening, fetching a row, who wrote it
 *	1	store.c	SPI and the role switch to the tables' owner
 *	1	pool.c	the refresh pool: its shared memory, queue and workers' slots
 *	1	worker.c	starting a refresh worker, relaying its answer, stopping it
 *	1	counter_slot.c	a counter's slot rows, read and written directly: slot count, sums, one slot's increment
 *	2	provider.c	calling a realm's login and validate
 *	2	credential_state.c	reading a realm and a user's credential (fresh hits directly), the access check, storing, recording a failure
 *	2	grow.c	hot counter growth: the requests and their worker
 *	3	refresh.c	the refresh steps, propagation, the refresh workers' mains
 *	4	counter.c	the counter functions
 *	4	credential.c	credential_get and the other credential functions
 *	4	realm.c	registering realms and granting them
 *	4	locks.c	key_holders(), for the turnstile.locks view
 *	4	rate_limit.c	rate_limit and rate_limit_sweep: fixed-window rate limits
 *	5	counter_once.c	counter_incr_once: increments a retry cannot apply twice
 *	6	guc.c	_PG_init and the settings
 *
 *-------------------------------------------------------------------------
 */
#ifndef TURNSTILE_H
#define TURNSTILE_H

#include "postgres.h"

#include "access/xact.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "mb/pg_wchar.h"
#include "storage/dsm_impl.h"
#include "storage/lockdefs.h"
#include "utils/guc.h"
#include "utils/snapshot.h"

/*
 * Everything declared from here on is private to the library: hidden from
 * its dynamic symbol table, so that a call or a variable reached from
 * another file costs what it would within the file, not an indirection
 * through the PLT or the GOT on every use.  The SQL-callable functions and
 * _PG_init are declared in their own files and stay visible.
 */
#pragma GCC visibility push(hidden)

/* Counter names are 1 to this many characters long. */
#define TURNSTILE_NAME_MAX_CHARS	200

/* A hot counter has at most this many slots. */
#define TURNSTILE_SLOTS_MAX			1024

/* A registered realm, as credential_get needs it. */
typedef enum TsPropagation
{
	TURNSTILE_REQUIRES_NEW,		/* refresh in a transaction of its own */
	TURNSTILE_REQUIRED			/* refresh inside the caller's transaction */
} TsPropagation;

typedef struct TsRealm
{
	int			realm_id;
	const char *name;
	Oid			login;			/* InvalidOid: the function is gone */
	Oid			validate;
	const char *login_signature;	/* as registered, schema-qualified */
	const char *validate_signature; /* NULL: the realm has no validate */
	Oid			registered_by;	/* login and validate run as this role */
	const char *search_path;	/* ... with this search_path */
	TsPropagation propagation;
	bool		changed_here;	/* its row written by the calling transaction,
								 * which a refresh worker cannot see */
} TsRealm;

/* One user's cached credential, as read under the key's lock. */
typedef struct TsCredential
{
	bool		exists;			/* a row exists (it may hold no credential) */
	char	   *credential;		/* NULL if none */
	bool		invalidated;
	bool		fresh;			/* valid and before its refresh-ahead window */
	bool		usable;			/* valid and not expired */
	bool		changed_here;	/* row written by the calling transaction */
	bool		blocked;		/* a failed refresh holds off new attempts */
	TransactionId writer;		/* an open transaction that wrote the row and
								 * so holds the user (keylock.c), as read
								 * under the user's lock */
	char	   *last_error;		/* with blocked: what failed, and when */
	char	   *last_sqlstate;
	char	   *blocked_until;
	int64		version;
} TsCredential;

/* guc.c */
typedef enum TurnstileIsolation
{
	TURNSTILE_READ_COMMITTED,
	TURNSTILE_REPEATABLE_READ,
	TURNSTILE_SERIALIZABLE
} TurnstileIsolation;

extern int	turnstile_isolation;
extern int	turnstile_hot_slots_max;

/* async_commit.c */
extern bool turnstile_rate_limit_synchronous_commit;
extern void ts_async_commit_before_count(void);
extern void ts_async_commit_forget(void);
extern void ts_async_commit_after_count(void);

/* Realm ids go into the per-user lock tag, which leaves them 15 bits. */
#define TURNSTILE_REALM_ID_MAX		32767

/* args.c */
extern void ts_require_arg(bool isnull, const char *argname);
extern void ts_refuse_read_only(const char *fmt,...) pg_attribute_printf(1, 2);

/* Refuse a change in a read-only transaction; the arguments say what. */
#define ts_require_writable(...) \
	do { \
		if (XactReadOnly) \
			ts_refuse_read_only(__VA_ARGS__); \
	} while (0)
extern char *ts_name_arg(Datum arg, const char *what, int *len);

/* The small ones inline: they sit on every call's path. */
static inline char *
ts_realm_arg(FunctionCallInfo fcinfo, int argno)
{
	ts_require_arg(PG_ARGISNULL(argno), "realm");
	return ts_name_arg(PG_GETARG_DATUM(argno), "realm", NULL);
}

static inline int64
ts_user_id_arg(FunctionCallInfo fcinfo, int argno)
{
	ts_require_arg(PG_ARGISNULL(argno), "user_id");
	return PG_GETARG_INT64(argno);
}

static inline int64
ts_int64_arg(FunctionCallInfo fcinfo, int argno, const char *argname)
{
	ts_require_arg(PG_ARGISNULL(argno), argname);
	return PG_GETARG_INT64(argno);
}

/* keylock.c */
extern uint64 ts_counter_key(const char *name, int len);
extern void ts_lock_counter(uint64 key, LOCKMODE mode, const char *name);
extern bool ts_try_lock_counter(uint64 key, LOCKMODE mode);
extern void ts_unlock_counter(uint64 key, LOCKMODE mode);
typedef enum TsLockResult
{
	TS_LOCK_NOT_AVAILABLE,
	TS_LOCK_ACQUIRED,			/* newly, by this call */
	TS_LOCK_ALREADY_HELD		/* by this transaction, before this call */
} TsLockResult;

extern TsLockResult ts_lock_credential(int realm_id, int64 user_id, LOCKMODE mode,
									   bool wait, const char *realm);
extern void ts_unlock_credential(int realm_id, int64 user_id, LOCKMODE mode);
extern void ts_lock_realm_registry(void);
extern bool ts_keys_held_by_rows(void);
extern TransactionId ts_xact_writing(TransactionId xmax, Snapshot snapshot);
extern void ts_counter_wait_writer(uint64 key, TransactionId xid, const char *name);
extern void ts_counter_slot_wait_writer(uint64 key, int slot, TransactionId xid,
										const char *name);
extern void ts_credential_wait_writer(int realm_id, int64 user_id, TransactionId xid,
									  const char *realm);
extern bool ts_try_lock_counter_slot(uint64 key, int slot);
extern void ts_unlock_counter_slot(uint64 key, int slot);
extern void ts_wait_counter_slot(uint64 key, int slot, const char *name);
extern TsLockResult ts_try_lock_counter_growth(uint64 key);
extern void ts_lock_counter_growth(uint64 key);
extern void ts_unlock_counter_growth(uint64 key);
extern uint64 ts_idempotency_key_hash(const char *key);
extern void ts_lock_idempotency_key(uint64 key, const char *name);
extern void ts_unlock_idempotency_key(uint64 key);
extern void ts_idempotency_key_wait_writer(uint64 key, TransactionId xid, const char *name);

/* grow.c */
extern void ts_counter_request_growth(uint64 key, int slots, const char *name);

/* snapshot.c */
extern void ts_policy_check_level(void);
extern Snapshot ts_policy_snapshot(void);
extern Snapshot ts_latest_snapshot(void);
extern void ts_policy_release(Snapshot snapshot);
extern bool ts_policy_uses_latest(void);
extern void ts_policy_report_conflict(const char *subject, const char *verb,
									  const char *happened);
extern int	ts_policy_xact_isolation(void);

/* provider.c */
extern bool ts_provider_signature_fits(Oid function, bool validate);
extern int	ts_provider_signature_detail(bool validate);
extern char *ts_provider_login(const TsRealm *realm, int64 user_id);
extern bool ts_provider_validate(const TsRealm *realm, int64 user_id,
								 const char *credential);

/* relaccess.c (and relaccess.h) */
extern Oid	ts_tables_owner(void);

/* counter_slot.c */
extern void ts_counter_slot_init(void);
extern int	ts_counter_slots_peek(const char *name);
extern int64 ts_counter_sum_others(const char *name, uint64 key, int except_slot,
								   Snapshot snapshot, bool *overflowed);
extern bool ts_counter_sum(const char *name, uint64 key, Snapshot snapshot,
						   int64 *value, bool *overflowed);

/* the columns of turnstile.counter_slot, and room for a few added later */
#define Natts_ts_counter_slot_max	16

typedef enum TsSlotAdd
{
	TS_SLOT_ADDED,				/* done; see TsSlotAdded */
	TS_SLOT_NOT_ADDED,			/* no such slot row, the counter is hot where
								 * plain was expected or the reverse, or it
								 * would overflow */
	TS_SLOT_CHANGED,			/* under "repeatable read", changed after the
								 * caller's snapshot */
	TS_SLOT_NO_DIRECT_PATH,		/* the table was altered: use SQL */
	TS_SLOT_BUSY				/* a transaction in progress wrote the slot's
								 * row: wait for TsSlotAdded.writer */
} TsSlotAdd;

typedef struct TsSlotAdded
{
	int64		slot_value;		/* the slot's new value */
	int32		slots;			/* the counter's slot count, from the row; 0
								 * if there is none */
	bool		others_known;	/* the read covered every slot */
	bool		others_overflowed;	/* the other slots sum past bigint */
	int64		others;			/* the sum of the other slots */
	TransactionId writer;		/* with TS_SLOT_BUSY */
} TsSlotAdded;

extern bool ts_counter_has_bounds(void);
extern TransactionId ts_counter_writer(const char *name);
extern int	ts_counter_slots_remembered(uint64 key);
extern void ts_counter_slots_remember(uint64 key, int slots);
extern int	ts_counter_slot_to_start(uint64 key, int slots);
extern void ts_counter_slot_taken(uint64 key, int slot);
extern TsSlotAdd ts_counter_slot_add(const char *name, uint64 key, int slot,
									 int expected_slots, int64 delta, Snapshot snapshot,
									 TsSlotAdded *added);

/* pool.c */
struct BackgroundWorker;
extern int	turnstile_refresh_workers;
extern int	turnstile_refresh_worker_idle_time;
extern void ts_worker_describe(struct BackgroundWorker *worker, const char *function,
							   const char *type);
extern void ts_worker_connect(Oid database);
extern void ts_pool_init(void);
extern bool ts_pool_serves_here(void);
extern int	ts_pool_submit(dsm_handle handle, int64 user_id, const char *realm);
extern pid_t ts_pool_entry_status(int entry, bool *queued, bool *abandoned);
extern pid_t ts_pool_withdraw(int entry);
extern void ts_pool_release(int entry);
extern bool ts_pool_entry_settled(int entry);
extern bool ts_pool_worker_attach(int slot, Oid *database);
extern bool ts_pool_worker_take(dsm_handle *handle, bool *leave, long *idle_ms);
extern void ts_pool_worker_done(void);

/* worker.c */

/* What a caller tells its refresh worker, at the start of the shared segment. */
typedef struct TsRefreshRequest
{
	Oid			database;
	int			xact_isolation; /* XACT_* level of the worker's transaction */
	bool		restricted;		/* the caller is in a security-restricted
								 * operation, and so is the refresh */
	int64		user_id;
	char		realm[(TURNSTILE_NAME_MAX_CHARS + 1) * MAX_MULTIBYTE_CHAR_LEN];
} TsRefreshRequest;

extern char *ts_refresh_in_worker(const TsRealm *realm, int64 user_id);
extern dsm_segment *ts_worker_attach(dsm_handle handle, TsRefreshRequest **request);
extern void ts_worker_send_credential(const char *credential);
extern void ts_worker_send_failure(ErrorData *failure);

/* store.c */
#define TS_STATEMENT_MAX_ARGS	10	/* realm_insert's, the most */

typedef struct TsStatement
{
	const char *sql;			/* fully schema- and operator-qualified */
	int			nargs;
	Oid			argtypes[TS_STATEMENT_MAX_ARGS];
	SPIPlanPtr	plan;			/* prepared on first use, then kept */
	bool		replan;			/* planned anew on every run, for its best
								 * plan depends on how big the table is */
} TsStatement;

typedef struct TsStoreSession
{
	Oid			saved_userid;
	int			saved_sec_context;
	int			outer_caller_sec_context;	/* see ts_store_caller_sec_context */
	MemoryContext caller_context;	/* where results that outlive SPI go */
} TsStoreSession;

extern void ts_store_open(TsStoreSession *session);
extern void ts_store_close(TsStoreSession *session);
extern int	ts_store_exec(TsStatement *stmt, Datum *values, const char *nulls,
						  Snapshot snapshot, bool read_only);
extern Datum ts_store_value(int row, int col, bool *isnull);
extern char *ts_store_text(TsStoreSession *session, int row, int col);
extern void ts_store_materialize(FunctionCallInfo fcinfo, TsStatement *stmt,
								 Snapshot snapshot);
extern void ts_check_row_desc(FunctionCallInfo fcinfo, TupleDesc desc, int ncols,
							  const Oid *types);
extern void ts_check_row_type(FunctionCallInfo fcinfo, int ncols, const Oid *types);
extern void ts_put_row(FunctionCallInfo fcinfo, const Datum *values, const bool *nulls);
extern Datum ts_form_row(TupleDesc desc, const Datum *values, const bool *nulls);
extern void ts_store_run_as(Oid role, void (*body) (void *), void *arg);
extern bool ts_store_caller_restricted(void);

/* credential_state.c */
extern void ts_credential_state_init(void);
extern text *ts_credential_fresh_hit(const char *realm_name, int64 user_id);
extern bool ts_realm_accessible(Oid user, int32 realm_id, Oid registered_by,
								Snapshot snapshot);
extern TransactionId ts_credential_inserting(int32 realm_id, int64 user_id);
extern void ts_credential_read(TsStoreSession *session, const char *realm_name,
							   int64 user_id, Snapshot snapshot, TsRealm *realm,
							   TsCredential *cached);
extern void ts_credential_read_now(TsStoreSession *session, const char *realm_name,
								   int64 user_id, TsRealm *realm, TsCredential *cached);
extern Snapshot ts_credential_read_locked(TsStoreSession *session, const char *realm_name,
										  int64 user_id, TsRealm *realm,
										  TsCredential *cached);
extern void ts_credential_check_unchanged(TsStoreSession *session, const char *realm_name,
										  int64 user_id, TsCredential *cached);
extern Snapshot ts_credential_lock_exclusive(TsStoreSession *session,
											 const char *realm_name, int64 user_id,
											 TsRealm *realm, TsCredential *cached,
											 TsLockResult *lock);
extern void ts_credential_unlock_written(const TsRealm *realm, int64 user_id,
										 TsLockResult lock);
extern void ts_credential_raise_recorded_failure(const TsRealm *realm, int64 user_id,
												 const TsCredential *cached);
extern void ts_credential_require_writable(int64 user_id, const char *realm_name);
extern void ts_credential_record_failure(const char *realm_name, int64 user_id,
										 ErrorData *failure);
extern void ts_credential_store(const TsRealm *realm, int64 user_id,
								bool exists, const char *credential,
								int logins, int validations, Snapshot snapshot);

/* counter.c, for the functions built on an increment */
typedef struct TsCounter
{
	char	   *name;			/* as given */
	int			len;
	uint64		key;			/* its lock key */
} TsCounter;

extern void ts_counter_from_arg(FunctionCallInfo fcinfo, TsCounter *counter);
extern int64 ts_counter_add(const TsCounter *counter, int64 delta);

/* counter_once.c */
extern char *turnstile_idempotency_window;
extern int64 turnstile_idempotency_window_usec;
extern bool ts_idempotency_window_check(char **newval, void **extra, GucSource source);
extern void ts_idempotency_window_assign(const char *newval, void *extra);

/* refresh.c */
extern char *ts_refresh(const TsRealm *realm, int64 user_id,
						const TsCredential *cached, Snapshot snapshot, bool *apart);
extern char *ts_refresh_steps(const TsRealm *realm, int64 user_id,
							  const TsCredential *cached, Snapshot snapshot);
extern void ts_credential_check_recursion(const TsRealm *realm, int64 user_id);
extern char *ts_credential_refresh(const TsRealm *realm, int64 user_id,
								   const TsCredential *cached, Snapshot snapshot,
								   bool here_only, bool *apart);
extern char *ts_credential_refresh_here(const char *realm_name, int64 user_id);



#pragma GCC visibility pop

#endif							/* TURNSTILE_H */
