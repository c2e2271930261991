# scripts/matrix.sh — the version matrix of scripts/test --matrix (sourced).
# shellcheck shell=bash
#
# Each supported PostgreSQL is tested on the Debian release that ships it,
# in a root of that release that starts with nothing but debootstrap's
# minbase: no PostgreSQL, no compiler, no locale.  For every version:
#
#   1. the root is made with debootstrap (once; later runs reuse it), its
#      apt pointed at the mirror this machine uses, and a policy-rc.d put in
#      so that installing postgresql-N starts no server;
#   2. the project is copied into the root;
#   3. /proc, /dev, a fresh /dev/shm (PostgreSQL's dynamic shared memory
#      needs it) and /dev/pts (apt logs through a pty) are mounted into the
#      root, in a mount namespace of its own so that nothing leaks to this
#      machine and the kernel drops them even if the run is killed; they are
#      also unmounted explicitly at the end;
#   4. scripts/test --pg N runs inside as root with env -i: PATH and COPT
#      (-Werror) only.  It installs the packages with the same
#      ensure_packages a user's machine gets, builds, and runs every suite;
#   5. scripts/package builds the Debian package there, and
#      scripts/package-test installs it into a fresh copy of the release's
#      pristine minbase root (kept as <release>-base), with postgresql-N and
#      nothing else, and tests it there; on PostgreSQL 15 it runs the README
#      there too (scripts/readme-test).
#
# Environment:
#	PG_TURNSTILE_ROOTS	where the roots are kept (default .roots/ in the
#						repository, git-ignored)
#	PG_TURNSTILE_MIRROR	Debian archive for the roots (default: the one in
#						this machine's apt sources, else deb.debian.org)

# "PostgreSQL major:Debian release", in the order they run.
MATRIX=(
	15:bookworm
	17:trixie
	18:forky
)

# Where the project sits inside a root.
ROOT_SRC=/usr/src/pg_turnstile

# Print the URI of this machine's apt sources whose path ends in /$1
# ("debian", "debian-security"), if any.
host_apt_uri() {
	local want=$1 file

	for file in /etc/apt/sources.list /etc/apt/sources.list.d/*.list \
		/etc/apt/sources.list.d/*.sources; do
		[ -f "$file" ] || continue
		awk -v want="$want" '
			/^[ \t]*#/ { next }
			$1 == "URIs:" { for (i = 2; i <= NF; i++) print $i; next }
			$1 ~ /^deb$/ { for (i = 2; i <= NF; i++) if ($i !~ /^\[/ && $i !~ /\]$/ && $i !~ /=/) { print $i; break } }
		' "$file"
	done | sed 's,/*$,,' | grep -m1 "/$want\$" || true
}

# Set MIRROR and SECURITY_MIRROR.
choose_mirrors() {
	MIRROR=${PG_TURNSTILE_MIRROR:-$(host_apt_uri debian)}
	MIRROR=${MIRROR:-http://deb.debian.org/debian}
	SECURITY_MIRROR=$(host_apt_uri debian-security)
	SECURITY_MIRROR=${SECURITY_MIRROR:-${MIRROR%/debian}/debian-security}
}

# Install debootstrap on this machine if it is missing.
ensure_debootstrap() {
	command -v debootstrap >/dev/null && return 0
	command -v apt-get >/dev/null || die "debootstrap is missing and this is not a Debian system"
	say "installing debootstrap"
	DEBIAN_FRONTEND=noninteractive apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends debootstrap >/dev/null
}

# Create the minbase root of release $1 in $2 (in a temporary folder first,
# so that an interrupted debootstrap leaves no half root to reuse).  A
# debootstrap older than the release has no script for it; Debian's new
# releases all use the sid script.
make_root() {
	local release=$1 root=$2 script=/usr/share/debootstrap/scripts/$1
	local log=$2.debootstrap.log

	[ -e "$script" ] || script=/usr/share/debootstrap/scripts/sid
	rm -rf "$root.tmp"
	if ! debootstrap --variant=minbase "$release" "$root.tmp" "$MIRROR" \
		"$script" >"$log" 2>&1; then
		tail -n 20 "$log" >&2
		die "debootstrap of $release failed (log: $log)"
	fi
	mv "$root.tmp" "$root"
}

# Point the root's apt at the mirror, with the release's updates and, if the
# mirror serves it, its security archive; keep postgresql-N from starting a
# server or creating a cluster on install.  Run on every use, so that a root
# made by an older version of this script is brought up to date.
configure_root() {
	local release=$1 root=$2 proxy=""

	rm -f "$root/etc/apt/sources.list"
	cat >"$root/etc/apt/sources.list.d/debian.sources" <<-EOF
		Types: deb
		URIs: $MIRROR
		Suites: $release $release-updates
		Components: main
		Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
	EOF
	if [ ! -e "$root/.no-security" ]; then
		cat >"$root/etc/apt/sources.list.d/debian-security.sources" <<-EOF
			Types: deb
			URIs: $SECURITY_MIRROR
			Suites: $release-security
			Components: main
			Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
		EOF
	fi

	# Debian's testing may stay past its Release file's Valid-Until on a
	# mirror; only forky's root accepts that.
	if [ "$release" = forky ]; then
		printf 'Acquire::Check-Valid-Until "false";\n' \
			>"$root/etc/apt/apt.conf.d/99pg-turnstile-valid-until"
	fi
	# the proxy this machine's apt uses, if any
	eval "$(apt-config shell proxy Acquire::http::Proxy 2>/dev/null || true)"
	if [ -n "$proxy" ]; then
		printf 'Acquire::http::Proxy "%s";\n' "$proxy" \
			>"$root/etc/apt/apt.conf.d/99pg-turnstile-proxy"
	fi

	# invoke-rc.d asks policy-rc.d; 101 means "do not start anything"
	printf '#!/bin/sh\nexit 101\n' >"$root/usr/sbin/policy-rc.d"
	chmod 755 "$root/usr/sbin/policy-rc.d"
	# the tests make their own clusters: no "main" cluster on install
	mkdir -p "$root/etc/postgresql-common"
	printf 'create_main_cluster = false\n' >"$root/etc/postgresql-common/createcluster.conf"
}

# Check once, right after the root is made, that the security archive of
# the release answers; if not, the root goes without it from then on.
probe_security() {
	local release=$1 root=$2

	if ! in_root "$root" apt-get update -qq >"$root.apt-update.log" 2>&1 ||
		grep -q '^[EW]:.*-security' "$root.apt-update.log"; then
		say "$release: $SECURITY_MIRROR does not serve $release-security; the root goes without it"
		touch "$root/.no-security"
		rm -f "$root/etc/apt/sources.list.d/debian-security.sources"
	fi
}

# Copy the project into the root, as scripts/lib.sh's copy_tree does.
copy_into_root() {
	local root=$1

	rm -rf "${root:?}$ROOT_SRC"
	mkdir -p "$root$ROOT_SRC"
	tar_tree "$REPO_DIR" | tar -C "$root$ROOT_SRC" -xf -
}

# Run a command in the root, with /proc, /dev, /dev/shm and /dev/pts there,
# in a private mount namespace, and env -i: PATH, and COPT if set.
in_root() {
	local root=$1
	shift

	# shellcheck disable=SC2016	# expanded by the inner shell
	unshare --mount --propagation private -- /bin/sh -c '
		root=$1
		shift
		cleanup() {
			umount "$root/dev/pts" "$root/dev/shm" "$root/dev" "$root/proc" 2>/dev/null
		}
		trap cleanup EXIT
		trap "exit 130" INT
		trap "exit 143" TERM
		mount -t proc proc "$root/proc" &&
			mount --bind /dev "$root/dev" &&
			mkdir -p "$root/dev/shm" &&
			mount -t tmpfs -o mode=1777,nosuid,nodev shm "$root/dev/shm" &&
			mkdir -p "$root/dev/pts" &&
			mount -t devpts -o newinstance,ptmxmode=0666 devpts "$root/dev/pts" ||
			exit 1
		env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
			${COPT:+COPT="$COPT"} chroot "$root" "$@"
	' in_root "$root" "$@"
}

# Make the roots that are missing, in parallel: debootstrap mostly waits for
# the network.
prepare_roots() {
	local entry release pids=() made=() i status=0

	for entry in "${MATRIX[@]}"; do
		for release in "${entry#*:}" "${entry#*:}-base"; do
			[ -d "$ROOTS_DIR/$release" ] && continue
			say "$release: making a minbase root in $ROOTS_DIR/$release"
			make_root "${release%-base}" "$ROOTS_DIR/$release" &
			pids+=($!)
			made+=("$release")
		done
	done
	for i in "${!pids[@]}"; do
		wait "${pids[$i]}" || status=1
	done
	[ "$status" = 0 ] || die "could not make every root"
	for release in "${made[@]}"; do
		configure_root "${release%-base}" "$ROOTS_DIR/$release"
		probe_security "${release%-base}" "$ROOTS_DIR/$release"
	done
}

# Run scripts/test --pg $1 in the root of release $2; add its counts to
# MATRIX_PASSED and MATRIX_FAILED and its summary to MATRIX_LINES.
run_version() {
	local major=$1 release=$2 root=$ROOTS_DIR/$2 log=$ROOTS_DIR/$2.test.log
	local start=$SECONDS status=0 last passed=0 failed=1

	configure_root "$release" "$root"
	copy_into_root "$root"
	printf '\n======== PostgreSQL %s on Debian %s ========\n' "$major" "$release"
	# finish what an interrupted earlier run left half-installed
	in_root "$root" dpkg --configure -a >/dev/null 2>&1 || true
	in_root "$root" "$ROOT_SRC/scripts/test" --pg "$major" 2>&1 | tee "$log" ||
		status=$?
	last=$(tail -n 1 "$log")
	if [[ $last =~ ^([0-9]+)\ passed,\ ([0-9]+)\ failed$ ]]; then
		passed=${BASH_REMATCH[1]}
		failed=${BASH_REMATCH[2]}
	fi
	add_matrix_result "PostgreSQL $major ($release)" "$passed" "$failed" "$status" "$start" "$log"
}

# Add one step's counts to MATRIX_PASSED and MATRIX_FAILED and its summary
# line to MATRIX_LINES: $1 what, $2 passed, $3 failed, $4 exit status, $5
# start (SECONDS), $6 log.  A step that failed without a failed test counts
# one.
add_matrix_result() {
	local what=$1 passed=$2 failed=$3 status=$4 start=$5 log=$6 line

	[ "$status" = 0 ] || [ "$failed" != 0 ] || failed=1
	line=$(printf '%s: %d passed, %d failed, %d s' "$what" "$passed" "$failed" \
		$((SECONDS - start)))
	[ "$status" = 0 ] || line="$line (exit status $status, log: $log)"
	say "$line"
	MATRIX_LINES+=("$line")
	MATRIX_PASSED=$((MATRIX_PASSED + passed))
	MATRIX_FAILED=$((MATRIX_FAILED + failed))
}

# Build the package of PostgreSQL $1 in the root of release $2 (which has
# the build dependencies once scripts/test has run there), and test it in a
# fresh copy of the release's pristine root; each check of
# scripts/package-test counts as one test.
run_package_test() {
	local major=$1 release=$2 build=$ROOTS_DIR/$2 root=$ROOTS_DIR/$2-package
	local log=$ROOTS_DIR/$2.package.log start=$SECONDS status=0 passed failed
	local readme=()

	[ "$major" != 15 ] || readme=(--readme)
	printf '\n======== the package for PostgreSQL %s on Debian %s ========\n' "$major" "$release"
	{
		in_root "$build" "$ROOT_SRC/scripts/package" --pg "$major" &&
			rm -rf "$root" &&
			cp -a "$ROOTS_DIR/$release-base" "$root" &&
			configure_root "$release" "$root" &&
			# here Debian's postgresql-N makes its cluster main, as anywhere
			rm -f "$root/etc/postgresql-common/createcluster.conf" &&
			copy_into_root "$root" &&
			mkdir -p "$root$ROOT_SRC/dist" &&
			cp "$build$ROOT_SRC"/dist/postgresql-"$major"-turnstile_*.deb "$root$ROOT_SRC/dist/" &&
			in_root "$root" "$ROOT_SRC/scripts/package-test" --pg "$major" "${readme[@]}"
	} 2>&1 | tee "$log" || status=$?
	passed=$(grep -cE '^package-test: .*(: ok|blocks passed)$' "$log" || true)
	failed=$(grep -cE '^package-test: .*: FAILED$' "$log" || true)
	add_matrix_result "the package for PostgreSQL $major ($release)" "$passed" "$failed" \
		"$status" "$start" "$log"
}

# Entry point of scripts/test --matrix.
run_matrix() {
	local entry line

	is_root || die "--matrix makes and enters Debian roots: run it as root"
	ROOTS_DIR=${PG_TURNSTILE_ROOTS:-$REPO_DIR/.roots}
	mkdir -p "$ROOTS_DIR"
	ROOTS_DIR=$(cd "$ROOTS_DIR" && pwd)
	command -v unshare >/dev/null || die "unshare (util-linux) is missing"
	exec {MATRIX_LOCK_FD}>"$ROOTS_DIR/lock"
	flock -n "$MATRIX_LOCK_FD" || die "another scripts/test --matrix is using $ROOTS_DIR"
	ensure_debootstrap
	choose_mirrors
	say "mirror: $MIRROR (security: $SECURITY_MIRROR); roots in $ROOTS_DIR"
	prepare_roots
	say "roots ready after $SECONDS s"

	MATRIX_PASSED=0
	MATRIX_FAILED=0
	MATRIX_LINES=()
	for entry in "${MATRIX[@]}"; do
		run_version "${entry%%:*}" "${entry#*:}"
		run_package_test "${entry%%:*}" "${entry#*:}"
	done

	printf '\n==> matrix, took %d s\n' "$SECONDS"
	for line in "${MATRIX_LINES[@]}"; do
		printf '%s\n' "$line"
	done
	printf '%d passed, %d failed\n' "$MATRIX_PASSED" "$MATRIX_FAILED"
	[ "$MATRIX_FAILED" = 0 ] && [ "$MATRIX_PASSED" -gt 0 ]
}
