#!/usr/bin/env bash
# The whole test suite: installs what the tests need (QEMU, kmod, e2fsprogs,
# kexec-tools, Debian's kernel), then runs vet, the unit tests and the QEMU
# boot tests. This is the README's test command; .ci/run calls it.
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/install-deps.sh
kernel_dir=$(./scripts/fetch-kernel.sh)
echo "test.sh: kernel at ${kernel_dir}"

export PATH="$PATH:/usr/local/go/bin"

# Cross checks: the library must build, and its tests compile, off
# linux/amd64 (the segments load method is linux/amd64 only and stubbed
# with ErrNotSupported elsewhere). go vet compiles the tests, as
# go test -c would, without writing a binary per package.
cross_checks() {
	local target
	for target in darwin/amd64 linux/arm64; do
		echo "test.sh: GOOS=${target%/*} GOARCH=${target#*/} go build ./... && go vet ./..."
		GOOS=${target%/*} GOARCH=${target#*/} go build ./...
		GOOS=${target%/*} GOARCH=${target#*/} go vet ./...
	done
	# Windows: the library builds (the tests use unix-only calls such as
	# mkfifo and are not compiled there).
	echo "test.sh: GOOS=windows GOARCH=amd64 go build ./..."
	GOOS=windows GOARCH=amd64 go build ./...
}

# The library's importers build none of the test harness: a scratch module
# that imports pkg/fastreboot (replace => this tree) must have no package of
# mkuimage, gobusybox or bubbletea in its build graph (go list -deps). Its
# module graph (go list -m all, printed for the record) still lists them:
# u-root v0.16.0's own go.mod requires mkuimage and gobusybox directly (and
# bubbletea as // indirect, for its shell), and a pruned module graph
# (go >= 1.17) keeps the go.mod requirements of every module that provides
# a package, so any importer of u-root lists them as modules. They are
# never downloaded for a build (only their go.mod files are read) and
# never compiled; the package-level check below is the one that can fail.
check_importer_graph() {
	local harness_pkgs='github.com/u-root/mkuimage|github.com/u-root/gobusybox|github.com/charmbracelet/bubbletea'
	local scratch go_version
	echo "test.sh: an importer of pkg/fastreboot builds no mkuimage, gobusybox or bubbletea"
	scratch=$(mktemp -d)
	go_version=$(go mod edit -json | sed -n 's/^\t"Go": "\(.*\)",$/\1/p')
	cat >"$scratch/go.mod" <<EOF_MOD
module example.com/scratch

go ${go_version}

require github.com/fastreboot/fastreboot v0.0.0-00010101000000-000000000000

replace github.com/fastreboot/fastreboot => $PWD
EOF_MOD
	printf 'package main\n\nimport _ "github.com/fastreboot/fastreboot/pkg/fastreboot"\n\nfunc main() {}\n' >"$scratch/main.go"
	if ! (cd "$scratch" && go mod tidy && go build -o /dev/null . &&
		go list -deps . >deps.txt && go list -m all >modules.txt); then
		rm -rf "$scratch"
		return 1
	fi
	echo "test.sh: go list -m all of the scratch importer:"
	sed 's/^/  /' "$scratch/modules.txt"
	# The pattern must match real package paths: the harness's graph has them.
	# Into a file first: with pipefail, grep -q quitting at its first match
	# would end go list with SIGPIPE and fail the pipeline (seen once the
	# harness's graph outgrew the pipe's buffer).
	if ! (cd qemu-tests && go list -deps ./harness) >"$scratch/harness-deps.txt" ||
		! grep -Eq "^($harness_pkgs)/" "$scratch/harness-deps.txt"; then
		echo "test.sh: FAIL: the harness pattern matches none of qemu-tests/harness's packages" >&2
		rm -rf "$scratch"
		return 1
	fi
	if grep -E "^($harness_pkgs)/" "$scratch/deps.txt"; then
		echo "test.sh: FAIL: the packages above are in pkg/fastreboot's build graph" >&2
		rm -rf "$scratch"
		return 1
	fi
	rm -rf "$scratch"
}

cross_checks

# Both go.mod files are tidy: the library's lists only what pkg/, internal/
# and cmd/ use (a harness requirement put back there would be removed).
echo "test.sh: go mod tidy -diff (the library's module and qemu-tests')"
go mod tidy -diff
(cd qemu-tests && go mod tidy -diff)

check_importer_graph

echo "test.sh: go vet ./..."
go vet ./...

echo "test.sh: unit tests"
go test -count=1 ./...

# The QEMU boot tests live in their own Go module (qemu-tests/go.mod, with
# replace => ../), which holds the harness's requirements (mkuimage,
# gobusybox, u-root's commands as tools) so the library's go.mod does not.
# Its boot tests are one package, so -v streams progress as it happens.
# They must not skip here: a missing QEMU or kernel is a failure.
echo "test.sh: qemu-tests module: go vet ./..."
(cd qemu-tests && go vet ./...)
echo "test.sh: QEMU boot tests (single-threaded TCG, about 30 minutes on 2 cores, TestDebianSystem about 10 of them)"
(cd qemu-tests && go test -count=1 $(go list ./... | grep -v '/qemu-tests$') &&
	FASTREBOOT_REQUIRE_QEMU=1 go test -count=1 -v -timeout 75m ./)
