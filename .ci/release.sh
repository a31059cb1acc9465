#!/usr/bin/env bash
# Release checks, run by CI and before tagging (see RELEASING.md):
#
#  0. go.work at HEAD uses every module (examples too) and replaces the root
#     with ./ at each root version a module requires: in workspace mode the
#     go command reads the root's go.mod at those versions, which no proxy
#     serves before they are published.
#  1. Installability. Builds a file-based module proxy from this repository's
#     own git history (.ci/proxy), then, with GOWORK=off and that proxy first
#     in GOPROXY, checks every nested module (every directory of the HEAD
#     commit holding a go.mod, except examples/ and .ci/):
#       - it builds and vets in place against the root version its go.mod
#         requires (not the working tree), with its go.sum as committed;
#       - a fresh module can `go get` it at HEAD's version and build a main
#         that imports its packages, the root resolving to the required
#         version, as it would for a user once both are published;
#     then one fresh module gets the root and every nested module at HEAD.
#     A nested module requiring a root version that names no commit of main
#     (such as v0.0.0-00010101000000-000000000000 with a replace) fails here.
#  2. API compatibility. For the root and each nested module with a release
#     tag (vX.Y.Z, or DIR/vX.Y.Z), compares the exported API of the newest
#     tag with HEAD's using apidiff, and fails on an incompatible change unless
#     APICHECK_ACCEPT names that tag (space-separated, e.g.
#     APICHECK_ACCEPT="v0.3.0 redisdedup/v0.3.0"). Without tags it says so and
#     passes.
#
# It checks committed work (HEAD), not uncommitted changes. Network: only the
# module proxy (GOPROXY's value as fallback) for third-party modules.
#
# Usage: bash .ci/release.sh [install|api|all]   (default all)
#        bash .ci/release.sh bump [REV [DIR...]]    (see bump below)
#        bash .ci/release.sh work                   (fix go.work in the work tree)
#   KEEP=1 keeps the temporary directory for a look afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
export PATH="$PATH:/usr/local/go/bin:$(go env GOPATH)/bin"
what="${1:-all}"

work=$(mktemp -d "${TMPDIR:-/tmp}/tlwebhook-release.XXXXXX")
if [ "${KEEP:-}" = 1 ]; then
	echo "release: keeping $work"
else
	trap 'rm -rf "$work"' EXIT
fi

fallback=$(GOWORK=off go env GOPROXY)
case "$fallback" in
off | "") fallback=off ;;
esac

echo "== release: building tools (.ci/proxy)"
(cd .ci/proxy && GOWORK=off GOFLAGS=-mod=readonly go build -o "$work/bin/ciproxy" . &&
	GOWORK=off GOFLAGS=-mod=readonly go build -o "$work/bin/apidiff" golang.org/x/exp/cmd/apidiff)

# build_proxy [ciproxy build flags]: the proxy in $work/proxy, the plan in
# $work/plan, and the environment of a user's build from then on.
build_proxy() {
	echo "== release: module proxy from git history at $(git rev-parse --short HEAD)"
	"$work/bin/ciproxy" build -repo "$repo" -out "$work/proxy" "$@" >"$work/plan"
	column -t -s $'\t' "$work/plan" 2>/dev/null || cat "$work/plan"
	root_path=$(awk -F'\t' '$1=="."{print $2}' "$work/plan")
	root_head=$(awk -F'\t' '$1=="."{print $3}' "$work/plan")

	# Everything below resolves modules as a user's build does.
	export GOWORK=off
	export GOFLAGS=-mod=mod
	export GOPROXY="file://$work/proxy,$fallback"
	if [ "$fallback" = off ]; then export GOPROXY="file://$work/proxy"; fi
	export GONOSUMDB="$root_path"
	export GOPRIVATE=
	export GONOPROXY=
}

# The committed tree at HEAD, for the in-place and API checks.
mkdir -p "$work/head"
git archive HEAD | tar -x -C "$work/head"

failures=()
fail() {
	echo "release: FAIL: $*"
	failures+=("$*")
}

# fresh_module DIR PATH@VERSION... : a new module that gets the given
# versions and builds a main importing every non-internal library package of
# those modules.
fresh_module() {
	local dir=$1
	shift
	mkdir -p "$dir"
	(
		cd "$dir"
		go mod init example.com/tryinstall >/dev/null 2>&1
		go get "$@" || exit 1
		local pkgs=()
		for mv in "$@"; do
			local mp=${mv%@*}
			while IFS= read -r p; do pkgs+=("$p"); done < <(
				go list -f '{{if ne .Name "main"}}{{.Module.Path}} {{.ImportPath}}{{end}}' "$mp/..." |
					awk -v mp="$mp" '$1 == mp {print $2}' | grep -v -e '/internal/' -e '/internal$' || true)
		done
		[ "${#pkgs[@]}" -gt 0 ] || {
			echo "no library package found in $*"
			exit 1
		}
		{
			echo "package main"
			echo
			echo "import ("
			for p in "${pkgs[@]}"; do echo "	_ \"$p\""; done
			echo ")"
			echo
			echo "func main() {}"
		} >main.go
		go build -o /dev/null . || exit 1
		echo "built a main importing: ${pkgs[*]}"
		go list -m all | grep -F "$root_path" | sed 's/^/  resolved: /'
	)
}

install_check() {
	local dir path version req n
	while IFS=$'\t' read -r -u 3 dir path version req replaced; do
		[ "$dir" = . ] && continue
		echo "== release: $path"
		if [ "$replaced" != - ]; then
			fail "$dir/go.mod replaces $root_path: users' builds ignore a replace; use go.work for local development"
		fi
		if [ "$req" = - ]; then
			echo "  (requires no version of $root_path)"
		elif ! (cd "$work/head/$dir" && GOFLAGS=-mod=readonly go build ./... && GOFLAGS=-mod=readonly go vet ./...) 2>&1 | sed 's/^/  | /'; then
			fail "$dir does not build with GOWORK=off against $root_path@$req and its committed go.sum (fix: bash .ci/release.sh bump, see RELEASING.md)"
		else
			echo "  builds and vets in place with GOWORK=off against $root_path@$req"
		fi
		n=${dir//\//_}
		if ! fresh_module "$work/use/$n" "$path@$version" >"$work/use-$n.log" 2>&1; then
			sed 's/^/  | /' "$work/use-$n.log"
			fail "a fresh module cannot go get and build $path@$version"
			continue
		fi
		sed 's/^/  /' "$work/use-$n.log" | grep -v '^  go: downloading' || true
		if [ "$req" != - ] && ! grep -qF "resolved: $root_path $req" "$work/use-$n.log"; then
			fail "$path@$version: the root did not resolve to the required $req"
		fi
	done 3<"$work/plan"

	echo "== release: the root and every nested module at HEAD together"
	local all=()
	while IFS=$'\t' read -r -u 3 dir path version req replaced; do all+=("$path@$version"); done 3<"$work/plan"
	if fresh_module "$work/use/all" "${all[@]}" >"$work/use-all.log" 2>&1; then
		grep -v '^go: downloading' "$work/use-all.log" | sed 's/^/  /'
		grep -qF "resolved: $root_path $root_head" "$work/use-all.log" ||
			fail "the root did not resolve to HEAD's $root_head"
	else
		sed 's/^/  | /' "$work/use-all.log"
		fail "a fresh module cannot go get and build ${all[*]}"
	fi
}

api_check() {
	local dir path version req tag n accepted out
	mkdir -p "$work/api"
	while IFS=$'\t' read -r -u 3 dir path version req replaced; do
		tag=$("$work/bin/ciproxy" latest-tag -repo "$repo" "$dir")
		if [ -z "$tag" ]; then
			echo "== apicheck: $path has no release tag yet: nothing to compare"
			continue
		fi
		echo "== apicheck: $path, $tag -> HEAD"
		n=${tag//\//_}
		mkdir -p "$work/api/$n"
		git archive "refs/tags/$tag" | tar -x -C "$work/api/$n"
		if ! (cd "$work/api/$n/$dir" && "$work/bin/apidiff" -m -w "$work/api/$n.old" "$path") ||
			! (cd "$work/head/$dir" && "$work/bin/apidiff" -m -w "$work/api/$n.new" "$path"); then
			fail "apicheck: cannot load $path at $tag or HEAD"
			continue
		fi
		out=$("$work/bin/apidiff" -m -incompatible "$work/api/$n.old" "$work/api/$n.new")
		"$work/bin/apidiff" -m "$work/api/$n.old" "$work/api/$n.new" | sed 's/^/  /'
		if [ -n "$out" ]; then
			accepted=no
			for a in ${APICHECK_ACCEPT:-}; do [ "$a" = "$tag" ] && accepted=yes; done
			if [ "$accepted" = yes ]; then
				echo "  incompatible changes since $tag accepted by APICHECK_ACCEPT"
			else
				fail "apicheck: incompatible API changes in $path since $tag (intended? list them in CHANGELOG.md and set APICHECK_ACCEPT=$tag)"
			fi
		else
			echo "  compatible with $tag"
		fi
	done 3<"$work/plan"
}

# bump [REV [DIR...]]: make each nested module (default: all at HEAD)
# require the root at REV's version (default HEAD; it must be on main) with no
# replace, and tidy it against the proxy so that its go.sum holds the root's
# hashes. Edits the working tree only; review and commit the result.
bump() {
	local rev=${1:-HEAD} v dirs dir
	[ $# -gt 0 ] && shift
	build_proxy -root-rev "$rev"
	v=$("$work/bin/ciproxy" pseudo -repo "$repo" "$rev")
	if [ $# -gt 0 ]; then dirs=("$@"); else mapfile -t dirs < <(awk -F'\t' '$1!="."{print $1}' "$work/plan"); fi
	for dir in "${dirs[@]}"; do
		echo "== release: bump $dir to $root_path@$v"
		(cd "$repo/$dir" && go mod edit -dropreplace="$root_path" -require="$root_path@$v" && go mod tidy)
	done
	"$work/bin/ciproxy" work -repo "$repo" -write
}

# work_check: go.work at HEAD uses every module and replaces the root with ./
# at each version a module requires (workspace builds read the root's go.mod
# at those versions, which no proxy serves before publication).
work_check() {
	echo "== release: go.work"
	"$work/bin/ciproxy" work -repo "$repo" || fail "go.work at HEAD does not cover the modules (fix: bash .ci/release.sh work)"
}

case "$what" in
work)
	"$work/bin/ciproxy" work -repo "$repo" -write
	;;
install)
	work_check
	build_proxy
	install_check
	;;
api)
	build_proxy
	api_check
	;;
all)
	work_check
	build_proxy
	install_check
	api_check
	;;
bump)
	shift
	bump "$@"
	;;
*)
	echo "usage: $0 [install|api|all|work|bump [REV [DIR...]]]" >&2
	exit 2
	;;
esac

if [ "${#failures[@]}" -gt 0 ]; then
	echo "== release: ${#failures[@]} failure(s):"
	printf '  %s\n' "${failures[@]}"
	exit 1
fi
echo "== release: ok"
