#!/usr/bin/env bash
# Runs the benchmarks of bench_test.go COUNT times and prints benchstat
# tables (medians, confidence intervals, deltas against the baseline of each
# family) and a table of ratios of medians.
#
# The test binary is built once and run COUNT times, each run going through
# every benchmark, so that background load spreads over all implementations
# alike instead of skewing whichever ran during a busy moment.
#
# Environment: COUNT (default 6), BENCHTIME (default 1s), BENCH (regexp,
# default '^Benchmark(Verify|Handler|ParseEvent)$'), OUT (default
# bench/results).
set -euo pipefail
cd "$(dirname "$0")/.."

COUNT=${COUNT:-6}
BENCHTIME=${BENCHTIME:-1s}
BENCH=${BENCH:-'^Benchmark(Verify|Handler|ParseEvent)$'}
OUT=${OUT:-bench/results}
BENCHSTAT_VERSION=v0.0.0-20260908200009-22c9c6c9d4da

mkdir -p "$OUT"
GOFLAGS= go install "golang.org/x/perf/cmd/benchstat@$BENCHSTAT_VERSION"
benchstat="$(go env GOPATH)/bin/benchstat"

go test -c -o "$OUT/tlwebhook.test" .
raw="$OUT/raw.txt"
: >"$raw"
for i in $(seq "$COUNT"); do
	echo "run $i/$COUNT" >&2
	"$OUT/tlwebhook.test" -test.run='^$' -test.bench="$BENCH" -test.benchtime="$BENCHTIME" >>"$raw"
done

# benchstat splits columns on sub-benchmark keys of the form key=value:
# Verify/floor/256B becomes Verify/impl=floor/size=256B.
named="$OUT/named.txt"
sed -E \
	-e 's#^BenchmarkVerify/([a-z]+)/#BenchmarkVerify/impl=\1/size=#' \
	-e 's#^BenchmarkHandler/([a-z_]+)/#BenchmarkHandler/impl=\1/payload=#' \
	-e 's#^BenchmarkParseEvent/([a-z_]+)/#BenchmarkParseEvent/impl=\1/payload=#' \
	"$raw" >"$named"

echo "== Verify: floor (one HMAC, pre-keyed) vs tlwebhook vs svix"
"$benchstat" -filter '.name:Verify' -col '/impl@(floor tlwebhook svix)' "$named"
echo
echo "== Handler: hand-written (io.ReadAll + svix + encoding/json) vs tlwebhook (default options, and without callback timeout)"
"$benchstat" -filter '.name:Handler' -col '/impl@(handwritten tlwebhook tlwebhook_untimed)' "$named"
echo
echo "== ParseEvent: json.Unmarshal into the event struct vs ParseEvent"
"$benchstat" -filter '.name:ParseEvent' -col '/impl@(encoding_json tlwebhook)' "$named"
echo
echo "== Ratios of medians"
go run ./bench/ratio <"$raw"
echo "raw results: $raw" >&2
