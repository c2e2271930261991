# pg_turnstile — exact counters and a per-user credential cache

MODULE_big = pg_turnstile
OBJS = \
	src/guc.o \
	src/args.o \
	src/async_commit.o \
	src/keylock.o \
	src/snapshot.o \
	src/store.o \
	src/counter.o \
	src/counter_once.o \
	src/rate_limit.o \
	src/provider.o \
	src/refresh.o \
	src/credential_state.o \
	src/credential.o \
	src/realm.o \
	src/relaccess.o \
	src/counter_slot.o \
	src/locks.o \
	src/grow.o \
	src/pool.o \
	src/worker.o

EXTENSION = pg_turnstile
DATA = \
	pg_turnstile--1.0.sql \
	pg_turnstile--1.0--1.1.sql \
	pg_turnstile--1.1--1.2.sql \
	pg_turnstile--1.2--1.3.sql \
	pg_turnstile--1.3--1.4.sql \
	pg_turnstile--1.4--1.5.sql
PGFILEDESC = "pg_turnstile - exact counters and a serialized credential cache"

REGRESS = \
	counter_api \
	counter_errors \
	counter_hot \
	counter_once \
	counter_bounds \
	rate_limit \
	counter_isolation \
	counter_security \
	credential_api \
	credential_errors \
	credential_security \
	credential_propagation \
	credential_backoff \
	hostile_objects \
	upgrade
# UTF8 whatever the server's default: hostile_objects stores bytes that are
# invalid only in a multibyte encoding.
REGRESS_OPTS = --inputdir=. --encoding=UTF8 --load-extension=pg_turnstile

ISOLATION = \
	counter_create_race \
	counter_incr_wait \
	counter_cas_race \
	counter_bounds_race \
	counter_once_race \
	counter_once_sweep_race \
	rate_limit_race \
	counter_hot_cas \
	counter_snapshot_policy \
	counter_advisory_keys \
	counter_lock_timeout \
	credential_stampede \
	credential_refresh_ahead \
	credential_snapshot_policy \
	credential_locks \
	credential_lock_timeout \
	hostile_races \
	keys_held_by_rows
# REGRESS_OPTS is not passed to the isolation suite; it needs its own.
ISOLATION_OPTS = --inputdir=. --load-extension=pg_turnstile

TAP_TESTS = 1

# "make installcheck" runs the regression and isolation suites against a
# running server, reached as libpq is told (PGHOST, PGPORT, PGUSER,
# PGPASSWORD), in databases of their own that it drops again at the end:
# contrib_regression_pg_turnstile and isolation_regression_pg_turnstile.
# Results and diffs go to CHECK_DIR (default: this tree), which the user
# running make must be able to write.  The TAP suite starts servers of its
# own: "make installcheck-tap", or scripts/test tap.
NO_INSTALLCHECK = 1
USE_MODULE_DB = 1
CHECK_DIR ?= .

PG_CONFIG ?= pg_config
PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

PG_BINDIR := $(shell $(PG_CONFIG) --bindir)

# Both suites run even if the first fails, and the databases are dropped
# either way; make fails if either suite did.  (pg_regress_installcheck puts
# an --outputdir of its own first; the last one counts.)
installcheck:
	@status=0; \
	$(if $(REGRESS),$(pg_regress_installcheck) $(REGRESS_OPTS) --outputdir=$(CHECK_DIR) $(REGRESS) || status=1;) \
	$(if $(ISOLATION),$(pg_isolation_regress_installcheck) $(ISOLATION_OPTS) --outputdir=$(CHECK_DIR)/output_iso $(ISOLATION) || status=1;) \
	$(PG_BINDIR)/psql -X -q -d postgres -v ON_ERROR_STOP=1 \
		-c 'DROP DATABASE IF EXISTS $(CONTRIB_TESTDB)' \
		-c 'DROP DATABASE IF EXISTS $(ISOLATION_TESTDB)' || status=1; \
	exit $$status

installcheck-tap:
	$(prove_installcheck)

.PHONY: installcheck installcheck-tap

# every source includes the private header
$(OBJS): src/turnstile.h
