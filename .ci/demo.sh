#!/usr/bin/env bash
# The main job: build the default models from their pinned sources and show the parity table.
set -euo pipefail
cd "$(dirname "$0")/.."
bash .ci/setup.sh
export TF_CPP_MIN_LOG_LEVEL=3
.venv/bin/emotion-export face --out models/face 2> >(grep -vE "^(W0000|I0000)|absl|oneDNN|AVX|XNNPACK" >&2)
