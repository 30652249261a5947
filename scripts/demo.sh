#!/usr/bin/env bash
# The demo: install what is missing, then run `knet demo` inside a throwaway sandbox.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
bash "$here/scripts/install.sh"
exec "${PYTHON:-python3}" -m knet.cli.main sandbox -- "${PYTHON:-python3}" -m knet.cli.main demo "$@"
