#!/usr/bin/env bash
# Load test over loopback with wrk (Debian: apt-get install -y wrk).
#
# Starts, one at a time, a bare net/http server that only reads the body and
# answers 204, the same server with a tlwebhook.Handler (bench/loadserver),
# and the example server (examples/basic, if present; its per-event log goes
# to /dev/null), and drives each with wrk: same payload, same signed headers,
# same connections and duration. Servers and wrk are run in alternating
# rounds so that background load affects all of them alike. Prints
# requests/s per round, the medians, and the median over rounds of each
# server's ratio to the bare server of the same round.
#
# Environment: PAYLOAD (default the job.completed sample), DURATION (10s),
# CONNS (32), THREADS (1), ROUNDS (3), PORT (8089), EXAMPLE (1 to include
# examples/basic when it exists, 0 to skip it), UNTIMED (1 to add a Handler
# without callback timeout, WithCallbackTimeout(0)).
set -euo pipefail
cd "$(dirname "$0")/.."

PAYLOAD=${PAYLOAD:-tlwebhooktest/testdata/samples/tensorlake.document_ingestion.job.completed.json}
DURATION=${DURATION:-10s}
CONNS=${CONNS:-32}
THREADS=${THREADS:-1}
ROUNDS=${ROUNDS:-3}
PORT=${PORT:-8089}
EXAMPLE=${EXAMPLE:-1}
UNTIMED=${UNTIMED:-0}
SECRET=whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw

command -v wrk >/dev/null || { echo "load.sh: wrk not found (apt-get install -y wrk)" >&2; exit 1; }

tmp=$(mktemp -d)
server_pid=
cleanup() {
	if [ -n "$server_pid" ]; then kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; fi
	rm -rf "$tmp"
}
trap cleanup EXIT

go build -o "$tmp/loadserver" ./bench/loadserver
servers=(bare handler)
if [ "$UNTIMED" = 1 ]; then
	servers+=(untimed)
fi
if [ "$EXAMPLE" = 1 ] && [ -d examples/basic ]; then
	go build -o "$tmp/example" ./examples/basic
	servers+=(example)
fi

# With two or more CPUs, the server gets CPU 0 and wrk CPU 1, so that they
# do not steal each other's time.
server_cpu=() client_cpu=()
if command -v taskset >/dev/null && [ "$(nproc)" -ge 2 ]; then
	server_cpu=(taskset -c 0) client_cpu=(taskset -c 1)
	export GOMAXPROCS=1
fi

start_server() {
	case "$1" in
	bare | handler)
		TLWEBHOOK_BENCH_SECRET=$SECRET "${server_cpu[@]}" "$tmp/loadserver" -mode "$1" -addr "127.0.0.1:$PORT" 2>/dev/null &
		;;
	untimed)
		TLWEBHOOK_BENCH_SECRET=$SECRET "${server_cpu[@]}" "$tmp/loadserver" -mode handler -callback-timeout 0 \
			-addr "127.0.0.1:$PORT" 2>/dev/null &
		;;
	example)
		TENSORLAKE_WEBHOOK_SECRET=$SECRET "${server_cpu[@]}" "$tmp/example" -addr "127.0.0.1:$PORT" 2>/dev/null &
		;;
	esac
	server_pid=$!
	for _ in $(seq 100); do
		if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then return 0; fi
		sleep 0.1
	done
	echo "load.sh: $1 server did not start" >&2
	exit 1
}

stop_server() {
	kill "$server_pid"
	wait "$server_pid" 2>/dev/null || true
	server_pid=
}

# run_wrk prints the requests/s of one wrk run against the current server.
run_wrk() {
	# Sign right before the run: the tolerance is five minutes.
	eval "$(TLWEBHOOK_BENCH_SECRET=$SECRET "$tmp/loadserver" -sign "$PAYLOAD")"
	export LOAD_BODY="$PAYLOAD" LOAD_SVIX_ID LOAD_SVIX_TIMESTAMP LOAD_SVIX_SIGNATURE
	out=$("${client_cpu[@]}" wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" -s bench/load.lua \
		"http://127.0.0.1:$PORT/webhooks/tensorlake")
	if grep -q "Non-2xx" <<<"$out"; then
		echo "load.sh: the server answered errors:" >&2
		echo "$out" >&2
		exit 1
	fi
	awk '/^Requests\/sec:/ {print $2}' <<<"$out"
}

echo "# load: $PAYLOAD ($(wc -c <"$PAYLOAD") B), wrk -t$THREADS -c$CONNS -d$DURATION, $ROUNDS rounds"
echo "# $(go version); $(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo), $(nproc) CPUs${GOMAXPROCS:+; server pinned to CPU 0 with GOMAXPROCS=1, wrk to CPU 1}"
declare -A results ratios
for round in $(seq "$ROUNDS"); do
	for s in "${servers[@]}"; do
		start_server "$s"
		rps=$(run_wrk)
		stop_server
		results[$s]="${results[$s]:-} $rps"
		[ "$s" = bare ] && bare_rps=$rps
		ratios[$s]="${ratios[$s]:-} $(awk -v a="$rps" -v b="$bare_rps" 'BEGIN {print a/b}')"
		printf "round %d  %-8s %12.0f req/s\n" "$round" "$s" "$rps"
	done
done

# Each round runs every server within a short time, so the ratio to the bare
# server of the same round is less exposed to background load than a ratio
# of medians taken over all rounds.
median() { tr ' ' '\n' | grep . | sort -g | awk '{v[NR]=$1} END {print (NR%2 ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2)}'; }
echo
printf "%-8s %14s %22s\n" server "median req/s" "median ratio to bare"
for s in "${servers[@]}"; do
	printf "%-8s %14.0f %21.3fx\n" "$s" "$(median <<<"${results[$s]}")" "$(median <<<"${ratios[$s]}")"
done
