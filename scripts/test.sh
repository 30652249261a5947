#!/usr/bin/env bash
# The whole test suite: unit tests (no root needed), then integration tests as root inside
# `knet sandbox`, a throwaway network + mount + PID namespace, so nothing they make can leak.
# The integration tests run in two sandboxes side by side: each is a private network world,
# so their clusters never meet, and the suite takes half the time. Each group's output is
# printed when both are done; the run fails if either group fails.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
bash scripts/install.sh
py=${PYTHON:-python3}
"$py" -m pytest -q tests/unit "$@"

out=$(mktemp -d /tmp/knet-integration.XXXXXX)
group() {  # NAME PYTEST-ARGS...: one sandbox, its own pytest temp dir, output to $out/NAME.log
    local name=$1 rc=0
    shift
    "$py" -m knet.cli.main sandbox -- "$py" -m pytest -q -p no:cacheprovider \
        --basetemp "$out/$name.tmp" "$@" >"$out/$name.log" 2>&1 || rc=$?
    echo "$rc" >"$out/$name.rc"
}
group labs tests/integration/knet/labs "$@" &
group rest tests/integration --ignore tests/integration/knet/labs "$@" &
wait
failed=0
for name in labs rest; do
    echo "== integration tests: $name (exit $(cat "$out/$name.rc"))"
    cat "$out/$name.log"
    [ "$(cat "$out/$name.rc")" = 0 ] || failed=1
done
rm -rf "$out"
[ "$failed" = 0 ] || exit 1

# The lab container (Dockerfile) built and run for real with podman: outside the sandbox, since
# the image build needs the host's network for apt and pip (tests/container/conftest.py).
"$py" -m pytest -q tests/container "$@"
