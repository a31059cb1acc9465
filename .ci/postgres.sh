# shellcheck shell=bash
# Starts a throwaway PostgreSQL server for the riverinbox tests.
#
# SOURCE this file, do not execute it: it exports TLWEBHOOK_DATABASE_URL into
# the calling shell.
#
#	. .ci/postgres.sh          # installs postgresql if missing, starts it
#	(cd riverinbox && go test -race ./...)
#	tlwebhook_postgres_stop    # optional; also safe to skip in CI
#
# It installs the Debian package postgresql when no server binaries are found
# under /usr/lib/postgresql/*/bin (as root, or through sudo), creates a
# cluster with initdb in a new temporary directory (as the postgres user when
# run as root, since the server refuses to run as root), starts it on
# 127.0.0.1 on a free port from 15432 up with trust authentication for local
# connections only, waits until it accepts connections, and exports:
#
#	TLWEBHOOK_DATABASE_URL   postgres://postgres@127.0.0.1:PORT/postgres?sslmode=disable
#	TLWEBHOOK_POSTGRES_PORT  its port
#
# When TLWEBHOOK_DATABASE_URL is already set and a server answers there, it
# is used as is. On failure the functions return non-zero, which stops a
# caller running under set -e.

# tlwebhook_postgres_bindir prints the bin directory of the newest installed
# PostgreSQL server, or fails.
tlwebhook_postgres_bindir() {
	local dir
	dir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
	[ -n "$dir" ] && [ -x "$dir/initdb" ] && [ -x "$dir/pg_ctl" ] && echo "$dir"
}

tlwebhook_postgres_install() {
	if tlwebhook_postgres_bindir >/dev/null; then
		return 0
	fi
	echo "postgres.sh: installing postgresql" >&2
	local sudo=""
	if [ "$(id -u)" -ne 0 ]; then
		if ! command -v sudo >/dev/null 2>&1; then
			echo "postgres.sh: postgresql is missing and this is not root; install the postgresql package" >&2
			return 1
		fi
		sudo="sudo"
	fi
	# The package's post-install script may create (and, where services
	# run, start) a default cluster on port 5432; this script never uses it.
	$sudo apt-get update -qq &&
		DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq postgresql >/dev/null || {
		echo "postgres.sh: apt-get install postgresql failed" >&2
		return 1
	}
	tlwebhook_postgres_bindir >/dev/null || {
		echo "postgres.sh: postgresql installed, but no initdb under /usr/lib/postgresql/*/bin" >&2
		return 1
	}
}

# tlwebhook_postgres_port_busy PORT: true when something accepts connections
# on 127.0.0.1:PORT.
tlwebhook_postgres_port_busy() {
	(exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# tlwebhook_postgres_as_owner CMD...: runs CMD as the owner of the cluster
# (postgres when this shell is root, else the current user).
tlwebhook_postgres_as_owner() {
	if [ "$(id -u)" -eq 0 ]; then
		if command -v runuser >/dev/null 2>&1; then
			runuser -u postgres -- "$@"
		else
			su postgres -s /bin/sh -c "$(printf '%q ' "$@")"
		fi
	else
		"$@"
	fi
}

tlwebhook_postgres_start() {
	if [ -n "${TLWEBHOOK_DATABASE_URL:-}" ] && command -v psql >/dev/null 2>&1 &&
		psql "$TLWEBHOOK_DATABASE_URL" -XAtqc 'select 1' >/dev/null 2>&1; then
		echo "postgres.sh: using the PostgreSQL already at TLWEBHOOK_DATABASE_URL" >&2
		return 0
	fi
	tlwebhook_postgres_install || return 1

	local bin dir port tries
	bin=$(tlwebhook_postgres_bindir) || return 1
	if [ "$(id -u)" -eq 0 ] && ! id postgres >/dev/null 2>&1; then
		echo "postgres.sh: running as root but there is no postgres user to own the cluster" >&2
		return 1
	fi
	dir="$(mktemp -d "${TMPDIR:-/tmp}/tlwebhook-postgres.XXXXXX")" || return 1
	chmod 0755 "$dir"
	if [ "$(id -u)" -eq 0 ]; then
		chown postgres "$dir" || return 1
	fi
	tlwebhook_postgres_as_owner "$bin/initdb" -D "$dir/data" -U postgres -A trust -E UTF8 \
		--locale=C >"$dir/initdb.log" 2>&1 || {
		echo "postgres.sh: initdb failed; see $dir/initdb.log" >&2
		return 1
	}
	for port in $(seq 15432 15532); do
		tlwebhook_postgres_port_busy "$port" && continue
		# The socket directory is the cluster's own, so nothing else on the
		# machine is touched; TCP listens on loopback only.
		if ! tlwebhook_postgres_as_owner "$bin/pg_ctl" -D "$dir/data" -l "$dir/server-$port.log" -w -t 30 \
			-o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c max_connections=200" start >/dev/null 2>&1; then
			echo "postgres.sh: server did not start on port $port; trying the next port" >&2
			continue
		fi
		for tries in $(seq 1 50); do
			if "$bin/pg_isready" -q -h 127.0.0.1 -p "$port" -U postgres; then
				export TLWEBHOOK_POSTGRES_PORT="$port"
				export TLWEBHOOK_DATABASE_URL="postgres://postgres@127.0.0.1:$port/postgres?sslmode=disable"
				TLWEBHOOK_POSTGRES_DIR="$dir"
				TLWEBHOOK_POSTGRES_BIN="$bin"
				echo "postgres.sh: $("$bin/postgres" --version) listening on 127.0.0.1:$port" >&2
				return 0
			fi
			sleep 0.1
		done
		echo "postgres.sh: no answer on port $port after $tries tries; trying the next port" >&2
		tlwebhook_postgres_as_owner "$bin/pg_ctl" -D "$dir/data" -m immediate stop >/dev/null 2>&1 || true
	done
	echo "postgres.sh: could not start PostgreSQL; logs in $dir" >&2
	return 1
}

# tlwebhook_postgres_stop shuts down the server this script started and
# removes its directory.
tlwebhook_postgres_stop() {
	if [ -n "${TLWEBHOOK_POSTGRES_DIR:-}" ] && [ -n "${TLWEBHOOK_POSTGRES_BIN:-}" ]; then
		tlwebhook_postgres_as_owner "$TLWEBHOOK_POSTGRES_BIN/pg_ctl" -D "$TLWEBHOOK_POSTGRES_DIR/data" \
			-m fast stop >/dev/null 2>&1 || true
		rm -rf "$TLWEBHOOK_POSTGRES_DIR"
		unset TLWEBHOOK_POSTGRES_DIR TLWEBHOOK_POSTGRES_BIN TLWEBHOOK_POSTGRES_PORT TLWEBHOOK_DATABASE_URL
	fi
}

tlwebhook_postgres_start
