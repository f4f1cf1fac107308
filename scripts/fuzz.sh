#!/bin/sh
# fuzz.sh [DURATION [PATTERN]] runs every fuzzer of the tree (the root module and
# qemu-tests) for DURATION each (default 10m), one after the other with one
# worker, and prints per fuzzer the executions and the inputs that widened
# the coverage beyond the seeds ("new interesting" in go test's words).
# It exits non-zero when a fuzzer crashes (its input lands in the package's
# testdata/fuzz/FuzzName/, commit it with the fix) or stalls: finds no new
# coverage after its seeds, which means it does not explore.
#
#   fuzz.sh --list    prints "DIR FuzzName" per fuzzer and exits.
#   fuzz.sh 1m Memmap runs only the fuzzers whose "DIR FuzzName" line
#                     matches the extended regular expression.
#
# Each fuzzer starts from its seeds only (its committed corpus and f.Add),
# not from inputs earlier runs cached, so "stalled" means the same thing
# on every run. The machine is shared: run it under nice. It is not part
# of scripts/test.sh (CI time).
set -u
export LC_ALL=C

cd "$(dirname "$0")/.." || exit 2

# fuzzers prints "DIR FuzzName" for every Fuzz function of a _test.go file,
# DIR relative to the repository root.
fuzzers() {
	find . -name '*_test.go' -not -path './.git/*' | sed 's#^\./##' | while read -r f; do
		sed -n 's/^func \(Fuzz[A-Za-z0-9_]*\)(.*\*testing\.F).*/\1/p' "$f" |
			while read -r name; do
				echo "$(dirname "$f") $name"
			done
	done | sort -u
}

if [ "${1:-}" = "--list" ]; then
	fuzzers
	exit 0
fi

duration=${1:-10m}
list=$(fuzzers | grep -E -- "${2:-.}")
if [ -z "$list" ]; then
	echo "fuzz.sh: no fuzzers found" >&2
	exit 2
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT INT TERM

status=0
printf '%-28s %-24s %12s %8s  %s\n' FUZZER PACKAGE EXECS NEW RESULT
echo "$list" | while read -r dir name; do
	# qemu-tests is a module of its own.
	case $dir in
	qemu-tests | qemu-tests/*) mod=qemu-tests rel=./${dir#qemu-tests} ;;
	*) mod=. rel=./$dir ;;
	esac
	rel=$(echo "$rel" | sed 's#^\./*$#.#; s#^\./\+#./#; s#/$##')
	log=$work/$name.log
	cache=$work/cache-$name
	start=$(date +%s)
	(cd "$mod" && go test -run '^$' -fuzz "^${name}\$" -fuzztime "$duration" -parallel 1 "$rel" \
		-args -test.fuzzcachedir="$cache") >"$log" 2>&1
	rc=$?
	took=$(($(date +%s) - start))
	last=$(grep 'fuzz: elapsed:.*execs:' "$log" | tail -n 1)
	execs=$(echo "$last" | sed -n 's/.*execs: \([0-9]*\).*/\1/p')
	new=$(echo "$last" | sed -n 's/.*new interesting: \([0-9]*\).*/\1/p')
	: "${execs:=0}" "${new:=0}"
	if [ $rc -ne 0 ]; then
		result="CRASH (exit $rc, ${took}s; log below)"
	elif [ "$new" -eq 0 ]; then
		result="stalled (${took}s)"
	else
		result="ok (${took}s)"
	fi
	printf '%-28s %-24s %12s %8s  %s\n' "$name" "$dir" "$execs" "$new" "$result"
	case $result in
	CRASH*)
		sed 's/^/    /' "$log" | tail -n 40
		echo fail >>"$work/failed"
		;;
	stalled*) echo stall >>"$work/failed" ;;
	esac
done
if [ -s "$work/failed" ]; then
	status=1
	echo "fuzz.sh: $(grep -c fail "$work/failed") crashed, $(grep -c stall "$work/failed") stalled" >&2
fi
exit $status
