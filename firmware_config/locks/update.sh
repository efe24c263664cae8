#!/usr/bin/env bash
# Re-resolve the lock files from setup.cfg's ranges, on purpose: `update.sh` moves every package to
# its newest allowed release, `update.sh NAME...` only those. Then run `bash .ci/test.sh`: the parity
# tests say whether the new toolchain still makes artifacts that agree with the float models.
set -euo pipefail
cd "$(dirname "$0")"
UV_VERSION=0.13.9
tool=$(mktemp -d)
trap 'rm -rf "$tool"' EXIT
python3 -m venv "$tool"
"$tool/bin/pip" install -q "uv==$UV_VERSION"
if [ $# -gt 0 ]; then upgrade=(); for name in "$@"; do upgrade+=(--upgrade-package "$name"); done
else upgrade=(--upgrade); fi
compile() {  # OUT CONSTRAINT EXTRA...
  local out=$1 constraint=$2; shift 2
  local extras=(); for extra in "$@"; do extras+=(--extra "$extra"); done
  "$tool/bin/uv" pip compile ../../setup.cfg "${extras[@]}" -c constraints.in ${constraint:+-c "$constraint"} "${upgrade[@]}" \
    --universal --python-version 3.10 --generate-hashes --quiet \
    --custom-compile-command "bash firmware_config/locks/update.sh" -o "$out"
}
# Each lock is complete for its install and agrees with the smaller ones on every shared package.
compile runtime.txt "" runtime
compile export.txt runtime.txt runtime export
compile test.txt export.txt runtime export test
echo "locks updated: $(grep -c '==' runtime.txt) runtime, $(grep -c '==' export.txt) export, $(grep -c '==' test.txt) test pins"
