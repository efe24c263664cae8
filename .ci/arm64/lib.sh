# Sourced by CI scripts: run commands inside the cached arm64 Debian root under qemu-user (built by .ci/arm64_rootfs.sh).
# shellcheck shell=bash
# API: arm64_cache | arm64_root | arm64_enter_mounts | arm64_leave_mounts | arm64_umount_under DIR | arm64_run CMD... | arm64_run_as_service CMD...
#      arm64_copy_in HOST_PATH ROOT_DIR | arm64_install_bundle TARBALL
# Knobs: EMOTION_EDGE_ARM64_ROOT (cached root dir), ARM64_QEMU_CPU (default cortex-a72, the Pi 4's core; the team
#        measured int8 TFLite going wrong on qemu 7.2's default model), ARM64_SERVICE_USER (default emotion-edge), ARM64_ENV_FILE (default /etc/emotion-edge/env).

ARM64_LIB_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ARM64_STAMP=.emotion-edge-ci-stamp

# The cached, pristine root that .ci/arm64_rootfs.sh builds; runs never write to it.
arm64_cache() { printf '%s\n' "${EMOTION_EDGE_ARM64_ROOT:-/var/cache/emotion-edge-ci/arm64-bookworm}"; }

# The live root commands run in: an overlay of the cache whose writes are dropped by arm64_leave_mounts.
arm64_root() { printf '%s\n' "$(arm64_cache).live/merged"; }

# Unmounts everything mounted under directory $1 (deepest first); fails if anything stays mounted.
arm64_umount_under() {
  local t
  for _ in 1 2 3; do
    t=$(findmnt -rn -o TARGET | awk -v p="$1/" 'index($0, p) == 1' | sort -r)
    [ -n "$t" ] || return 0
    while IFS= read -r t; do umount "$t" 2>/dev/null || umount -l "$t" || true; done <<<"$t"
  done
  [ -z "$(findmnt -rn -o TARGET | awk -v p="$1/" 'index($0, p) == 1')" ] || { echo "arm64: mounts left under $1" >&2; return 1; }
}

# Unmounts the live root and everything in it, including leftovers of a killed run, and drops the run's writes.
arm64_leave_mounts() {
  arm64_umount_under "$(arm64_cache).live" && rm -rf --one-file-system "$(arm64_cache).live"
  if [ -n "${ARM64_LOCK_FD:-}" ]; then exec {ARM64_LOCK_FD}>&-; unset ARM64_LOCK_FD; fi
}

# Takes the root's lock, overlays the cache at arm64_root, and mounts a fresh /proc, binds /sys, /dev, /dev/pts,
# /dev/shm and /tmp (each made private so nothing propagates back to the host), and the fake ARM /proc/cpuinfo.
# Sets an EXIT trap that calls arm64_leave_mounts (INT/TERM exit through it): a caller with its own EXIT trap
# must call arm64_leave_mounts from it.
arm64_enter_mounts() {
  local cache live root m
  cache=$(arm64_cache) live="$(arm64_cache).live" root=$(arm64_root)
  [ -f "$cache/$ARM64_STAMP" ] || { echo "arm64: no finished root at $cache (run .ci/arm64_rootfs.sh)" >&2; return 1; }
  exec {ARM64_LOCK_FD}>"$cache.lock"
  flock -w 1800 "$ARM64_LOCK_FD"
  trap arm64_leave_mounts EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
  arm64_leave_mounts
  mkdir -p "$live/upper" "$live/work" "$root"
  mount -t overlay overlay -o "lowerdir=$cache,upperdir=$live/upper,workdir=$live/work" "$root"
  mount --make-private "$root"
  mount -t proc proc "$root/proc" && mount --make-private "$root/proc"
  for m in /sys /dev /dev/pts /dev/shm /tmp; do
    [ -d "$m" ] || continue
    mkdir -p "$root$m"
    mount --bind "$m" "$root$m" && mount --make-private "$root$m"
  done
  # onnxruntime segfaults at import on the host's x86 cpuinfo: show a Cortex-A72 (Pi 4) one. Needed with qemu 7.2;
  # qemu >= 8 answers /proc/cpuinfo itself from QEMU_CPU, so there it is only a fallback.
  mount --bind -o ro "$ARM64_LIB_DIR/cpuinfo" "$root/proc/cpuinfo"
}

# Runs CMD... as root inside the root (host network, clean environment, QEMU_CPU set). Needs arm64_enter_mounts.
arm64_run() {
  env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 \
    QEMU_CPU="${ARM64_QEMU_CPU:-cortex-a72}" chroot "$(arm64_root)" "$@"
}

# Runs CMD... as the service user with the env file's KEY=value lines (comments skipped; like `env $(cat FILE)`,
# so values must not contain spaces or quotes).
arm64_run_as_service() {
  arm64_run /bin/sh -c 'u=$1 f=$2; shift 2; cd /; set -f
    exec runuser -u "$u" -- env $(grep -Ev "^[[:space:]]*(#|$)" "$f") "$@"' \
    sh "${ARM64_SERVICE_USER:-emotion-edge}" "${ARM64_ENV_FILE:-/etc/emotion-edge/env}" "$@"
}

# Copies a host file or directory into ROOT_DIR (a path inside the root) and prints the path inside the root.
arm64_copy_in() {
  local dest="$2"
  mkdir -p "$(arm64_root)$dest"
  cp -a "$1" "$(arm64_root)$dest/"
  printf '%s\n' "$dest/$(basename "$1")"
}

# Unpacks a device bundle tarball (one top directory) in /opt/ci-bundle and runs its install.sh --no-systemd as root.
arm64_install_bundle() {
  local root top
  root=$(arm64_root)
  rm -rf --one-file-system "$root/opt/ci-bundle"
  mkdir -p "$root/opt/ci-bundle"
  tar -xzf "$1" -C "$root/opt/ci-bundle"
  top=$(cd "$root/opt/ci-bundle" && ls -d -- */ | head -n1)
  arm64_run /bin/sh -c 'cd "/opt/ci-bundle/$1" && exec ./install.sh --no-systemd' sh "${top%/}"
}
