#!/usr/bin/env bash
# CI's arm64 smoke test: installs the Pi bundle in an emulated arm64 Debian root (qemu-user) and runs it as its service would.
# Usage: .ci/arm64_smoke.sh BUNDLE_TARBALL [X86_EVENTS_JSON ...]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
[ $# -ge 1 ] || { echo "usage: $0 BUNDLE_TARBALL [X86_EVENTS_JSON ...]" >&2; exit 2; }
bundle=$(realpath "$1")
shift
x86_events=("$@")   # reference events from the x86 run, for the comparison this script will make

bash "$here/arm64_rootfs.sh"
. "$here/arm64/lib.sh"
arm64_enter_mounts   # overlay of the cached root; its writes and all mounts go away on exit

echo "arm64-smoke: install $(basename "$bundle") with --no-systemd"
arm64_install_bundle "$bundle"

# Placeholder check until the bundle exists: the CLI starts on arm64 as the service user with the service's env file.
echo "arm64-smoke: emotion-edge --help as emotion-edge"
arm64_run_as_service /opt/emotion-edge/venv/bin/emotion-edge --help
echo "arm64-smoke: ok (${#x86_events[@]} x86 event files given, not compared yet)"
