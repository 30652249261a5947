#!/usr/bin/env bash
# The whole test suite: unit tests (no root needed), then integration tests as root inside
# `knet sandbox`, a throwaway network + mount namespace, so nothing they make can leak.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
bash scripts/install.sh
py=${PYTHON:-python3}
"$py" -m pytest -q tests/unit "$@"
"$py" -m knet.cli.main sandbox -- "$py" -m pytest -q tests/integration "$@"
# The lab container (Dockerfile) built and run for real with podman: outside the sandbox, since
# the image build needs the host's network for apt and pip (tests/container/conftest.py).
"$py" -m pytest -q tests/container "$@"
