#!/usr/bin/env bash
# Regenerates testdata/ed25519/vectors.json with OpenSSL, an Ed25519
# implementation independent of Go's crypto/ed25519:
#
#   bash testdata/ed25519/vectors.sh > testdata/ed25519/vectors.json
#
# Each vector is a fresh key pair from "openssl genpkey -algorithm ed25519"
# and a v1a signature from "openssl pkeyutl -sign -rawin" over
# id.timestamp.body, the content Svix signs. Keys are written as Svix shows
# them: whpk_ + base64(32-byte public key) and whsk_ + base64(seed || public
# key). Needs openssl 3.0 or later, base64 and coreutils.
set -euo pipefail
command -v openssl >/dev/null
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT

newkey() { # $1: name; writes $dir/$1.pem, prints "whsk_... whpk_..."
	openssl genpkey -algorithm ed25519 -out "$dir/$1.pem" 2>/dev/null
	openssl pkey -in "$dir/$1.pem" -outform DER | tail -c 32 >"$dir/$1.seed"
	openssl pkey -in "$dir/$1.pem" -pubout -outform DER | tail -c 32 >"$dir/$1.pub"
	printf 'whsk_%s whpk_%s\n' "$(cat "$dir/$1.seed" "$dir/$1.pub" | base64 -w0)" "$(base64 -w0 <"$dir/$1.pub")"
}

first=1
vector() { # $1 name, $2 key name, $3 id, $4 timestamp, $5 body file
	local name=$1 key=$2 id=$3 ts=$4 body=$5
	{ printf '%s.%s.' "$id" "$ts"; cat "$body"; } >"$dir/msg"
	openssl pkeyutl -sign -inkey "$dir/$key.pem" -rawin -in "$dir/msg" -out "$dir/sig"
	read -r sk pk <"$dir/$key.keys"
	[ $first = 1 ] || printf ',\n'
	first=0
	printf '    {"name": "%s", "signing_key": "%s", "public_key": "%s", "id": "%s", "timestamp": %s, "body_base64": "%s", "signature": "v1a,%s"}' \
		"$name" "$sk" "$pk" "$id" "$ts" "$(base64 -w0 <"$body")" "$(base64 -w0 <"$dir/sig")"
}

for k in a b c; do newkey $k >"$dir/$k.keys"; done
printf '{"event_type":"tensorlake.sandbox.created","event_id":"evt_1"}' >"$dir/json"
: >"$dir/empty"
printf '\000\377\r\n' >"$dir/binary"
printf '{"job_id":"parse_\303\251t\303\251","status":"failure","error":"\342\234\227 \360\237\224\245"}' >"$dir/unicode"
{ printf '{"pad":"'; head -c 2000 /dev/zero | tr '\0' 'x'; printf '"}\n'; } >"$dir/large"

printf '{\n  "generator": "bash testdata/ed25519/vectors.sh > testdata/ed25519/vectors.json (%s)",\n  "vectors": [\n' "$(openssl version | cut -d' ' -f1-2)"
vector "json body" a msg_2Lh9KpQ0vX1 1700000000 "$dir/json"
vector "empty body" a msg_empty 1700000001 "$dir/empty"
vector "binary body" a msg_binary 1700000002 "$dir/binary"
vector "unicode body" b msg_unicode 1614265330 "$dir/unicode"
vector "2 KiB body with trailing newline" b msg_large 4102444800 "$dir/large"
vector "other key" c msg_2Lh9KpQ0vX1 1700000000 "$dir/json"
printf '\n  ]\n}\n'
