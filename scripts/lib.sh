# scripts/lib.sh — set-up shared by scripts/test and scripts/demo (sourced).
# shellcheck shell=bash
#
# setup_cluster does everything the two scripts have in common:
#
#   1. as root on Debian, installs the packages that are missing;
#   2. copies the source tree into the run folder and builds and installs the
#      extension from that copy;
#   3. starts a throwaway cluster in the run folder, reachable only through a
#      Unix socket in it, and arranges for it to be stopped when the script
#      exits, however it exits.
#
# The run folder is .run/ in the repository (git-ignored).  PostgreSQL refuses
# to run as root, so as root the cluster, its clients and the test suites run
# as the postgres OS user, on files that user owns: hence the copy of the
# tree.  If that user cannot reach the repository, the run folder is a fresh
# folder under /tmp instead.  Run by anyone else (a developer with their own
# PostgreSQL), nothing is installed and everything runs as the current user.
#
# Environment:
#	PG_MAJOR			PostgreSQL major version to test (scripts/test --pg
#						sets it; default: the newest installed, else 15)
#	PG_CONFIG			pg_config of the target PostgreSQL
#						(default /usr/lib/postgresql/$PG_MAJOR/bin/pg_config)
#	PG_TURNSTILE_PORT	first port number to try (default 54329)
#	COPT				extra compiler options, as PGXS takes them
#						(scripts/test --matrix sets -Werror)
#
# After setup_cluster: PG_BIN, PG_OS_USER, RUN_DIR, SRC_DIR (the built copy),
# DATA_DIR, LOG_DIR, and PGHOST, PGPORT, PGUSER exported for clients.

REPO_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

# Print the major version of the pg_config $1.
pg_config_major() {
	"$1" --version | sed -n 's/^PostgreSQL \([0-9]*\).*/\1/p'
}

# Set PG_MAJOR: as given, else that of PG_CONFIG if set, else the newest
# PostgreSQL installed from Debian's packages, else (not as root) that of
# the pg_config on PATH, else 15.
choose_pg_major() {
	local bin

	if [ -z "${PG_MAJOR:-}" ] && [ -n "${PG_CONFIG:-}" ] &&
		command -v "$PG_CONFIG" >/dev/null; then
		PG_MAJOR=$(pg_config_major "$PG_CONFIG")
	fi
	if [ -z "${PG_MAJOR:-}" ]; then
		for bin in /usr/lib/postgresql/*/bin/postgres; do
			[ -x "$bin" ] || continue
			bin=${bin#/usr/lib/postgresql/}
			bin=${bin%%/*}
			[ "${PG_MAJOR:-0}" -ge "$bin" ] || PG_MAJOR=$bin
		done
	fi
	if [ -z "${PG_MAJOR:-}" ] && ! is_root && command -v pg_config >/dev/null; then
		PG_MAJOR=$(pg_config_major pg_config)
	fi
	PG_MAJOR=${PG_MAJOR:-15}
	case $PG_MAJOR in
		'' | *[!0-9]*) die "not a PostgreSQL major version: $PG_MAJOR" ;;
	esac
}

# Set PACKAGES, the Debian packages the scripts need for PG_MAJOR (pgbench,
# psql and contrib come with postgresql-N; Debian's postgresql-contrib is
# only a name for it, virtual from trixie on): to build and run the
# extension, which is all scripts/demo needs (PACKAGE_SET=demo); then what
# the tests need: the TAP framework's Perl, and real neighbours: PgBouncer,
# a backend-terminating background worker, PL/Proxy shards, the Java and
# Python example clients, and SQLsmith.
set_packages() {
	PACKAGES=(
		"postgresql-$PG_MAJOR"
		"postgresql-server-dev-$PG_MAJOR"
		make
		gcc
		libc6-dev
		util-linux
	)
	[ "${PACKAGE_SET:-test}" = demo ] && return 0
	PACKAGES+=(
		libipc-run-perl
		perl

		pgbouncer
		"pg-rage-terminator-$PG_MAJOR"
		"postgresql-$PG_MAJOR-plproxy"
		libpostgresql-jdbc-java
		default-jdk-headless
		python3
		python3-psycopg
		python3-psycopg2
		valgrind
		sqlsmith
	)
}

CLUSTER_STARTED=0
RUN_IS_TEMP=0
SOCK_IS_TEMP=0

# Print a progress line.
say() {
	printf '==> %s\n' "$*"
}

# Print an error and exit.
die() {
	printf 'error: %s\n' "$*" >&2
	exit 1
}

# True when running as root.
is_root() {
	[ "$(id -u)" -eq 0 ]
}

# Install the packages of PACKAGES that are missing (root only).  apt-get
# update runs only when something is missing, so repeated runs are fast.
ensure_packages() {
	local pkg log missing=()

	is_root || return 0
	command -v dpkg-query >/dev/null || die "not a Debian system: install PostgreSQL $PG_MAJOR and its server headers yourself and run as a normal user"
	set_packages
	for pkg in "${PACKAGES[@]}"; do
		if [ "$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null)" != "install ok installed" ]; then
			missing+=("$pkg")
		fi
	done
	[ "${#missing[@]}" -gt 0 ] || return 0
	say "installing ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	log=$(mktemp /tmp/pg_turnstile-apt.XXXXXX)
	# dpkg's hundreds of lines go to a log, shown if something goes wrong
	if ! { apt-get update -qq && apt-get install -y -qq --no-install-recommends \
		"${missing[@]}"; } >"$log" 2>&1; then
		tail -n 40 "$log" >&2
		die "installing the packages failed (log: $log)"
	fi
	rm -f "$log"
}

# Set PG_CONFIG (an absolute path) and PG_BIN, the server's binaries.
find_pg_config() {
	local version

	PG_CONFIG=${PG_CONFIG:-/usr/lib/postgresql/$PG_MAJOR/bin/pg_config}
	if [ ! -x "$PG_CONFIG" ] && ! is_root; then
		PG_CONFIG=$(command -v "$PG_CONFIG" || command -v pg_config || true)
	fi
	if [ -z "$PG_CONFIG" ] || [ ! -x "$PG_CONFIG" ]; then
		die "pg_config not found; set PG_CONFIG to the pg_config of your PostgreSQL"
	fi
	version=$(pg_config_major "$PG_CONFIG")
	[ "$version" = "$PG_MAJOR" ] ||
		die "$PG_CONFIG is PostgreSQL ${version:-?}, not $PG_MAJOR; set PG_CONFIG to the pg_config of PostgreSQL $PG_MAJOR"
	PG_BIN=$("$PG_CONFIG" --bindir)
}

# Run a command as the OS user that owns the cluster.
as_pg() {
	if is_root; then
		runuser -u "$PG_OS_USER" -- "$@"
	else
		"$@"
	fi
}

# Choose the run folder and the OS user that runs the cluster.
choose_run_dir() {
	if is_root; then
		PG_OS_USER=postgres
		id "$PG_OS_USER" >/dev/null 2>&1 || die "no $PG_OS_USER OS user; is postgresql-$PG_MAJOR installed?"
	else
		PG_OS_USER=$(id -un)
	fi

	RUN_DIR=$REPO_DIR/.run
	if is_root && ! runuser -u "$PG_OS_USER" -- test -x "$REPO_DIR"; then
		RUN_DIR=$(mktemp -d /tmp/pg_turnstile-run.XXXXXX)
		RUN_IS_TEMP=1
		say "$PG_OS_USER cannot reach $REPO_DIR, so the run folder is $RUN_DIR"
	fi
	mkdir -p "$RUN_DIR"
	chmod 755 "$RUN_DIR"		# reachable by PG_OS_USER whatever our umask
	cd "$RUN_DIR" || die "cannot enter $RUN_DIR"	# so that PG_OS_USER's commands start somewhere it can read
	SRC_DIR=$RUN_DIR/src
	DATA_DIR=$RUN_DIR/data
	SOCK_DIR=$RUN_DIR/sock
	LOG_DIR=$RUN_DIR/log
}

# Make sure no other run uses the same run folder at the same time.
lock_run_dir() {
	exec {RUN_LOCK_FD}>"$RUN_DIR/lock"
	flock -n "$RUN_LOCK_FD" || die "another scripts/test or scripts/demo is using $RUN_DIR"
}

# Stop a server left running in the run folder by an interrupted run, and
# remove its data, socket and log folders.
clean_run_dir() {
	if [ -f "$DATA_DIR/postmaster.pid" ]; then
		say "stopping a server left over from an earlier run"
		as_pg "$PG_BIN/pg_ctl" -D "$DATA_DIR" -m immediate -w stop >/dev/null 2>&1 || true
	fi
	rm -rf "$DATA_DIR" "$SOCK_DIR" "$LOG_DIR"
	mkdir -p "$LOG_DIR"
}

# Write a tar of the source tree in $1 to stdout, without git metadata, the
# run folder, the roots of scripts/test --matrix, or build and test products
# from a build in the tree itself.
tar_tree() {
	tar -C "$1" -cf - \
		--exclude=./.git --exclude=./.run --exclude=./.roots --exclude=./dist \
		--exclude='*.o' --exclude='*.so' --exclude='*.bc' \
		--exclude=./results --exclude=./output_iso --exclude=./log \
		--exclude=./tmp_check --exclude=./tmp_check_iso \
		--exclude='./regression.*' \
		.
}

# Copy the source tree into SRC_DIR.
copy_tree() {
	rm -rf "$SRC_DIR"
	mkdir -p "$SRC_DIR"
	tar_tree "$REPO_DIR" | tar -C "$SRC_DIR" -xf -
}

# Build and install the extension from SRC_DIR; on failure show the
# compiler's output and stop.
build_and_install() {
	local log=$LOG_DIR/build.log

	say "building and installing pg_turnstile (log: $log)"
	if ! make -C "$SRC_DIR" -j"$(nproc)" PG_CONFIG="$PG_CONFIG" \
		${COPT:+COPT="$COPT"} >"$log" 2>&1; then
		cat "$log" >&2
		die "build failed (log: $log)"
	fi
	if grep -q 'warning:' "$log"; then
		say "compiler warnings:"
		grep -A3 'warning:' "$log"
	fi
	if ! make -C "$SRC_DIR" install PG_CONFIG="$PG_CONFIG" >>"$log" 2>&1; then
		tail -n 30 "$log" >&2
		is_root || printf 'hint: run as root, or set PG_CONFIG to a PostgreSQL you can install into\n' >&2
		die "make install failed (log: $log)"
	fi
}

# Set PG_PORT: PG_TURNSTILE_PORT or 54329, or the next number whose socket
# does not exist yet here or in the usual socket folders.
pick_port() {
	local dir taken

	PG_PORT=${PG_TURNSTILE_PORT:-54329}
	while :; do
		taken=0
		for dir in "$SOCK_DIR" /run/postgresql /var/run/postgresql /tmp; do
			[ -e "$dir/.s.PGSQL.$PG_PORT" ] && taken=1
		done
		[ "$taken" = 0 ] && return 0
		PG_PORT=$((PG_PORT + 1))
	done
}

# Create the throwaway cluster in DATA_DIR, listening only on a Unix socket
# in SOCK_DIR (moved under /tmp when the path is too long for a socket).
init_cluster() {
	if [ "${#SOCK_DIR}" -gt 90 ]; then
		SOCK_DIR=$(mktemp -d /tmp/pg_turnstile-sock.XXXXXX)
		SOCK_IS_TEMP=1
	fi
	mkdir -p "$DATA_DIR" "$SOCK_DIR"
	chmod 700 "$SOCK_DIR"		# with trust auth, only PG_OS_USER may connect
	if is_root; then
		chown -R "$PG_OS_USER:" "$SRC_DIR" "$DATA_DIR" "$SOCK_DIR" "$LOG_DIR"
	fi
	pick_port

	if ! as_pg "$PG_BIN/initdb" -D "$DATA_DIR" -U "$PG_OS_USER" -A trust \
		-E UTF8 --no-locale --no-sync >"$LOG_DIR/initdb.log" 2>&1; then
		cat "$LOG_DIR/initdb.log" >&2
		die "initdb failed"
	fi
	cat >>"$DATA_DIR/postgresql.conf" <<EOF

# throwaway cluster of scripts/lib.sh
listen_addresses = ''
port = $PG_PORT
unix_socket_directories = '${SOCK_DIR//\'/\'\'}'
shared_buffers = 128MB
max_connections = 200
log_line_prefix = '%m [%p] '
EOF
}

# Start the cluster and point libpq's environment at it.  The lock's file
# descriptor is closed for the server, which would otherwise keep the run
# folder locked if it outlived us.
start_cluster() {
	local log=$LOG_DIR/postgresql.log

	CLUSTER_STARTED=1
	if ! as_pg "$PG_BIN/pg_ctl" -D "$DATA_DIR" -l "$log" -w -t 60 -s start {RUN_LOCK_FD}>&-; then
		tail -n 30 "$log" >&2
		die "the server did not start (log: $log)"
	fi
	export PGHOST=$SOCK_DIR PGPORT=$PG_PORT PGUSER=$PG_OS_USER PGDATABASE=postgres
	say "server running: PGHOST=$PGHOST PGPORT=$PGPORT PGUSER=$PGUSER (log: $log)"
}

# Stop the cluster if it was started; quiet, so that a script's last line
# stays its own.
stop_cluster() {
	[ "$CLUSTER_STARTED" = 1 ] || return 0
	CLUSTER_STARTED=0
	as_pg "$PG_BIN/pg_ctl" -D "$DATA_DIR" -m fast -w -t 60 stop \
		>>"$LOG_DIR/pg_ctl_stop.log" 2>&1 ||
		printf 'warning: could not stop the server in %s\n' "$DATA_DIR" >&2
}

# Exit trap: stop the cluster and remove temporary folders, quietly; a
# temporary run folder is kept after a failure, for its logs.
on_exit() {
	local status=$?

	stop_cluster
	[ "$SOCK_IS_TEMP" = 0 ] || rm -rf "$SOCK_DIR"
	[ "$RUN_IS_TEMP" = 0 ] || [ "$status" != 0 ] || rm -rf "$RUN_DIR"
	exit "$status"
}

# Everything the scripts share: packages, build, install, running cluster.
setup_cluster() {
	choose_pg_major
	ensure_packages
	find_pg_config
	choose_run_dir
	lock_run_dir
	trap on_exit EXIT
	trap 'exit 130' INT
	trap 'exit 143' TERM
	clean_run_dir
	copy_tree
	build_and_install
	init_cluster
	start_cluster
}

# Run make in the built copy of the tree as the cluster's OS user, pointed
# at the cluster.
pg_make() {
	(cd "$SRC_DIR" && as_pg make --no-print-directory PG_CONFIG="$PG_CONFIG" \
		PGHOST="$PGHOST" PGPORT="$PGPORT" PGUSER="$PGUSER" "$@")
}

# Print the value of a variable of the Makefile (REGRESS, ISOLATION, ...).
# shellcheck disable=SC2016	# $($*) is for make, not for the shell
make_var() {
	make -s --no-print-directory -C "$SRC_DIR" PG_CONFIG="$PG_CONFIG" \
		--eval='print-var-%: ; @echo $($*)' "print-var-$1"
}
