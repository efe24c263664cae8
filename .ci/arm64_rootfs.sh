#!/usr/bin/env bash
# Builds once, then reuses, the arm64 Debian bookworm root (Pi OS-like) that CI's qemu-user smoke tests run in.
# Usage: .ci/arm64_rootfs.sh [DIR]   (DIR defaults to $EMOTION_EDGE_ARM64_ROOT or /var/cache/emotion-edge-ci/arm64-bookworm)
set -euo pipefail
. "$(cd "$(dirname "$0")" && pwd)/arm64/lib.sh"
[ $# -eq 0 ] || export EMOTION_EDGE_ARM64_ROOT="$1"
root=$(arm64_cache)
cache=$(dirname "$root")
suite=bookworm
include=python3,python3-venv,libportaudio2,libsndfile1,ca-certificates,adduser,passwd,util-linux
stamp="v1 $suite minbase $include"   # a change here rebuilds the root
apt=(apt-get -qq -o DPkg::Lock::Timeout=600)
step() { echo "arm64-rootfs: $*"; }
mkdir -p "$cache"

# The mirror this machine's apt uses for the suite.
mirror=$(apt-get indextargets --format '$(REPO_URI) $(CODENAME)' 2>/dev/null | awk -v s=$suite '$2 == s { print $1; exit }')
mirror=${mirror:-http://deb.debian.org/debian/}

step "host packages"
if ! command -v debootstrap >/dev/null; then
  "${apt[@]}" install -y debootstrap >/dev/null 2>&1 || { "${apt[@]}" update && "${apt[@]}" install -y debootstrap >/dev/null; }
fi

# qemu >= 8 (liblsl's UDP multicast discovery fails under bookworm's 7.2): trixie's static qemu-user, fetched with a
# private apt state so the host's sources, pins and caches stay untouched.
qemu_major=$({ qemu-aarch64 --version 2>/dev/null || true; } | sed -n 's/^qemu-aarch64 version \([0-9]*\)\..*/\1/p')
if [ "${qemu_major:-0}" -lt 8 ] || [ ! -f /usr/lib/binfmt.d/qemu-aarch64.conf ]; then
  step "host qemu-user from trixie"
  t="$cache/apt-trixie"
  mkdir -p "$t/lists/partial" "$t/cache" "$t/parts" "$t/debs"
  printf 'Types: deb\nURIs: %s\nSuites: trixie\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
    "$mirror" >"$t/trixie.sources"
  o=(-o Dir::Etc::SourceList="$t/trixie.sources" -o Dir::Etc::SourceParts="$t/parts" -o Dir::State::Lists="$t/lists"
     -o Dir::Cache="$t/cache" -o APT::Sandbox::User=root)
  "${apt[@]}" "${o[@]}" update
  rm -f "$t/debs/"*.deb
  (cd "$t/debs" && "${apt[@]}" "${o[@]}" download qemu-user qemu-user-binfmt)
  # bookworm's qemu-user-static conflicts with these (trixie's qemu-user is the static build itself).
  if dpkg -s qemu-user-static >/dev/null 2>&1; then dpkg -r qemu-user-static >/dev/null; fi
  dpkg -i "$t/debs/"*.deb >/dev/null
  rm -f "$t/debs/"*.deb
fi
qemu-aarch64 --version | head -n1

step "binfmt"
[ -e /proc/sys/fs/binfmt_misc/register ] || mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
conf=$(cat /usr/lib/binfmt.d/qemu-aarch64.conf)
reg=/proc/sys/fs/binfmt_misc/qemu-aarch64
interp=$(cut -d: -f7 <<<"$conf")
# Re-register when an older qemu (e.g. binfmt-support's 7.2 entry) holds the slot; F makes it work inside chroots.
if [ -e "$reg" ] && ! { grep -qx "interpreter $interp" "$reg" && grep -q '^flags: .*F' "$reg"; }; then echo -1 >"$reg"; fi
[ -e "$reg" ] || echo "$conf" >/proc/sys/fs/binfmt_misc/register
grep -qx enabled "$reg"

exec {lock}>"$root.lock"
flock -w 1800 "$lock"
if [ "$(cat "$root/$ARM64_STAMP" 2>/dev/null)" = "$stamp" ] && [ -z "${EMOTION_EDGE_ARM64_REBUILD:-}" ]; then
  step "root up to date: $root"
else
  step "debootstrap $suite arm64 -> $root (log $root.log)"
  arm64_leave_mounts
  arm64_umount_under "$root.new"   # debootstrap's own /proc, /sys mounts when it was killed
  arm64_umount_under "$root"
  rm -rf --one-file-system "$root" "$root.new"
  start=$SECONDS
  mkdir -p "$cache/debs"   # downloaded .debs are kept: a rebuild downloads only what changed
  if ! debootstrap --arch=arm64 --variant=minbase --include="$include" --cache-dir="$cache/debs" \
      "$suite" "$root.new" "$mirror" >"$root.log" 2>&1; then
    tail -n 20 "$root.log" >&2
    exit 1
  fi
  rm -rf "$root.new/var/cache/apt/archives/"*.deb "$root.new/var/lib/apt/lists/"*_Packages
  echo "$stamp" >"$root.new/$ARM64_STAMP"
  mv "$root.new" "$root"
  step "built in $((SECONDS - start)) s, $(du -sh --one-file-system "$root" | cut -f1)"
fi

step "check"
QEMU_CPU=${ARM64_QEMU_CPU:-cortex-a72} chroot "$root" /usr/bin/python3 -c \
  'import ensurepip, platform; print("arm64-rootfs: python", platform.python_version(), platform.machine())'
