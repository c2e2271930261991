# pg_turnstile — exact counters and a per-user credential cache

MODULE_big = pg_turnstile
OBJS = \
	src/guc.o \
	src/args.o \
	src/keylock.o \
	src/snapshot.o \
	src/store.o \
	src/counter.o \
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
	pg_turnstile--1.3--1.4.sql
PGFILEDESC = "pg_turnstile - exact counters and a serialized credential cache"

REGRESS = \
	counter_api \
	counter_errors \
	counter_hot \
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
REGRESS_OPTS = --inputdir=. --outputdir=. --encoding=UTF8 --load-extension=pg_turnstile

ISOLATION = \
	counter_create_race \
	counter_incr_wait \
	counter_cas_race \
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
ISOLATION_OPTS = --inputdir=. --outputdir=output_iso --load-extension=pg_turnstile

TAP_TESTS = 1

PG_CONFIG ?= pg_config
PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

# every source includes the private header
$(OBJS): src/turnstile.h
