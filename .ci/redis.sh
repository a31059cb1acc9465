# shellcheck shell=bash
# Starts a throwaway redis-server for the redisdedup tests.
#
# SOURCE this file, do not execute it: it exports TLWEBHOOK_REDIS_ADDR into
# the calling shell.
#
#	. .ci/redis.sh          # installs redis-server if missing, starts it
#	(cd redisdedup && go test -race ./...)
#	tlwebhook_redis_stop    # optional; also safe to skip in CI
#
# It installs the Debian package redis-server when no redis-server is on
# PATH (as root, or through sudo), starts it on 127.0.0.1 on a free port
# from 16379 up, without persistence, waits until it answers PING, and
# exports:
#
#	TLWEBHOOK_REDIS_ADDR  host:port of the server
#	TLWEBHOOK_REDIS_PORT  its port
#
# When TLWEBHOOK_REDIS_ADDR is already set and a server answers there, it
# is used as is. On failure the functions return non-zero, which stops a
# caller running under set -e.

tlwebhook_redis_install() {
	if command -v redis-server >/dev/null 2>&1 && command -v redis-cli >/dev/null 2>&1; then
		return 0
	fi
	echo "redis.sh: installing redis-server" >&2
	local sudo=""
	if [ "$(id -u)" -ne 0 ]; then
		if ! command -v sudo >/dev/null 2>&1; then
			echo "redis.sh: redis-server is missing and this is not root; install the redis-server package" >&2
			return 1
		fi
		sudo="sudo"
	fi
	$sudo apt-get update -qq &&
		DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq redis-server >/dev/null || {
		echo "redis.sh: apt-get install redis-server failed" >&2
		return 1
	}
}

# tlwebhook_redis_port_busy PORT: true when something accepts connections
# on 127.0.0.1:PORT.
tlwebhook_redis_port_busy() {
	(exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# tlwebhook_redis_ping PORT: true when a Redis answers PONG on PORT.
tlwebhook_redis_ping() {
	[ "$(redis-cli -h 127.0.0.1 -p "$1" ping 2>/dev/null)" = "PONG" ]
}

tlwebhook_redis_start() {
	if [ -n "${TLWEBHOOK_REDIS_ADDR:-}" ] && command -v redis-cli >/dev/null 2>&1 &&
		[ "$(redis-cli -h "${TLWEBHOOK_REDIS_ADDR%:*}" -p "${TLWEBHOOK_REDIS_ADDR##*:}" ping 2>/dev/null)" = "PONG" ]; then
		echo "redis.sh: using the Redis already at $TLWEBHOOK_REDIS_ADDR" >&2
		return 0
	fi
	tlwebhook_redis_install || return 1

	local dir port tries
	dir="$(mktemp -d "${TMPDIR:-/tmp}/tlwebhook-redis.XXXXXX")" || return 1
	for port in $(seq 16379 16479); do
		tlwebhook_redis_port_busy "$port" && continue
		# With --daemonize the exit status does not tell whether the
		# port could be bound (another process may take it meanwhile);
		# PING does.
		redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no \
			--daemonize yes --dir "$dir" --pidfile "$dir/redis-$port.pid" \
			--logfile "$dir/redis-$port.log" >/dev/null || continue
		for tries in $(seq 1 50); do
			if tlwebhook_redis_ping "$port"; then
				export TLWEBHOOK_REDIS_PORT="$port"
				export TLWEBHOOK_REDIS_ADDR="127.0.0.1:$port"
				TLWEBHOOK_REDIS_DIR="$dir"
				echo "redis.sh: redis-server $(redis-server --version | sed -n 's/.* v=\([^ ]*\).*/\1/p') listening on $TLWEBHOOK_REDIS_ADDR" >&2
				return 0
			fi
			sleep 0.1
		done
		echo "redis.sh: no PONG on port $port after $tries tries; trying the next port" >&2
		if [ -f "$dir/redis-$port.pid" ]; then
			kill "$(cat "$dir/redis-$port.pid")" 2>/dev/null || true
		fi
	done
	echo "redis.sh: could not start redis-server; logs in $dir" >&2
	return 1
}

# tlwebhook_redis_stop shuts down the server this script started.
tlwebhook_redis_stop() {
	if [ -n "${TLWEBHOOK_REDIS_DIR:-}" ] && [ -n "${TLWEBHOOK_REDIS_PORT:-}" ]; then
		redis-cli -h 127.0.0.1 -p "$TLWEBHOOK_REDIS_PORT" shutdown nosave >/dev/null 2>&1 || true
		rm -rf "$TLWEBHOOK_REDIS_DIR"
		unset TLWEBHOOK_REDIS_DIR TLWEBHOOK_REDIS_PORT TLWEBHOOK_REDIS_ADDR
	fi
}

tlwebhook_redis_start
