#!/usr/bin/env bash
# CI's arm64 smoke test: installs a Pi bundle offline in an emulated arm64 Debian root (qemu-user) and runs the
# runtime there as systemd would run the service (its user, its unit's Environment= and EnvironmentFile), with a
# simulated Muse beside it. tests/test_arm64_device.py prepares WORKDIR and compares the events with an x86 run.
# Usage: .ci/arm64_smoke.sh BUNDLE_TARBALL WORKDIR SECONDS
#   WORKDIR (under /tmp, which the root shares) holds arm64.toml; gets arm64.events.jsonl, arm64.log, *.log
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
[ $# -eq 3 ] || { echo "usage: $0 BUNDLE_TARBALL WORKDIR SECONDS" >&2; exit 2; }
bundle=$(realpath "$1") work=$(realpath "$2") seconds=$3
case "$work" in /tmp/*) ;; *) echo "arm64-smoke: WORKDIR must be under /tmp (shared with the root)" >&2; exit 2;; esac

bash "$here/arm64_rootfs.sh"
. "$here/arm64/lib.sh"
stop_muse() { pkill -f "simulate-muse --name muse-arm64" 2>/dev/null || true; }
trap 'stop_muse; arm64_leave_mounts' EXIT
arm64_enter_mounts
trap 'stop_muse; arm64_leave_mounts' EXIT

echo "arm64-smoke: installing $(basename "$bundle") offline (install.sh --no-systemd)"
if ! arm64_install_bundle "$bundle" >"$work/arm64.install.log" 2>&1; then
  tail -30 "$work/arm64.install.log" >&2
  exit 1
fi
# The unit's Environment= lines, as systemd would set them (PYLSL_LIB among them).
unit=$(ls "$(arm64_root)"/opt/ci-bundle/*/systemd/emotion-edge.service)
mapfile -t unit_env < <(sed -n 's/^Environment=//p' "$unit")
bin=/opt/emotion-edge/venv/bin

echo "arm64-smoke: simulated Muse and the runtime as the service user for $seconds s"
arm64_run_as_service env "${unit_env[@]}" $bin/emotion-edge simulate-muse --name muse-arm64 \
  --duration $((seconds + 120)) >"$work/arm64.muse.log" 2>&1 &
status=0
arm64_run_as_service env "${unit_env[@]}" $bin/emotion-edge run --config "$work/arm64.toml" --print-events \
  --duration "$seconds" >"$work/arm64.events.jsonl" 2>"$work/arm64.log" || status=$?
stop_muse
wait || true
echo "arm64-smoke: runtime exit $status, $(grep -c '^{' "$work/arm64.events.jsonl" || true) events printed"
[ "$status" -eq 0 ] || { tail -30 "$work/arm64.log" >&2; exit 1; }
