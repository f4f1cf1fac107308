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
# with ErrNotSupported elsewhere). go vet compiles the tests.
for target in darwin/amd64 linux/arm64; do
	echo "test.sh: GOOS=${target%/*} GOARCH=${target#*/} go build ./... && go vet ./..."
	GOOS=${target%/*} GOARCH=${target#*/} go build ./...
	GOOS=${target%/*} GOARCH=${target#*/} go vet ./...
done

echo "test.sh: go vet ./..."
go vet ./...

echo "test.sh: unit tests"
go test -count=1 $(go list ./... | grep -v '/qemu-tests$')

# The QEMU boot tests (one package, so -v streams progress as it happens).
# They must not skip here: a missing QEMU or kernel is a failure.
echo "test.sh: QEMU boot tests (single-threaded TCG, about 20 minutes on 2 cores)"
FASTREBOOT_REQUIRE_QEMU=1 go test -count=1 -v -timeout 75m ./qemu-tests/
