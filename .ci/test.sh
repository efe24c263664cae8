#!/usr/bin/env bash
# The whole test suite, with all of its own set-up.
set -euo pipefail
cd "$(dirname "$0")/.."
bash .ci/setup.sh
export TF_CPP_MIN_LOG_LEVEL=3
exec .venv/bin/python -m pytest "$@"
