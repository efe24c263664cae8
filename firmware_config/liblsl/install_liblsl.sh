#!/usr/bin/env bash
# Install liblsl (the Lab Streaming Layer C library) on a Raspberry Pi / Jetson (aarch64, Debian or
# Ubuntu) so that pylsl can load it. pylsl's x86_64 wheel bundles liblsl; its aarch64 wheel does not,
# and Debian/Ubuntu ship no liblsl package, hence this script.
#
# HONEST NOTE: written and syntax-checked (bash -n) on an x86_64 development machine; it has NOT been
# executed on a Raspberry Pi or Jetson. Please report problems with the exact output.
#
# Usage:
#   sudo ./install_liblsl.sh                 # build the pinned release from source (about 10-20 min on a Pi 4)
#   sudo ./install_liblsl.sh --deb FILE.deb  # install a liblsl .deb you downloaded from
#                                            # https://github.com/sccn/liblsl/releases (pick the one matching
#                                            # your distribution and architecture, e.g. *_arm64.deb if offered)
# Environment: LIBLSL_VERSION (default 1.16.2; pylsl 1.18 needs >= 1.16), PREFIX (default /usr/local).
set -euo pipefail

LIBLSL_VERSION="${LIBLSL_VERSION:-1.16.2}"
PREFIX="${PREFIX:-/usr/local}"

if [[ $EUID -ne 0 ]]; then
    echo "run as root (sudo $0 $*): it installs packages and writes to ${PREFIX}/lib" >&2
    exit 1
fi

if [[ "${1:-}" == "--deb" ]]; then
    deb="${2:?--deb needs the path of a liblsl .deb}"
    apt-get install -y "$(realpath "$deb")"
    ldconfig
else
    apt-get update
    apt-get install -y --no-install-recommends build-essential cmake git ca-certificates
    work="$(mktemp -d)"
    trap 'rm -rf "$work"' EXIT
    git clone --depth 1 --branch "v${LIBLSL_VERSION}" https://github.com/sccn/liblsl.git "$work/liblsl"
    # LSL_UNIXFOLDERS puts the library in lib/ and headers in include/ (the usual Unix layout).
    cmake -S "$work/liblsl" -B "$work/build" -DCMAKE_BUILD_TYPE=Release -DLSL_UNIXFOLDERS=ON \
          -DCMAKE_INSTALL_PREFIX="$PREFIX" -DLSL_BUILD_EXAMPLES=OFF -DBUILD_TESTING=OFF
    # Two parallel jobs keep a 2 GB Pi from running out of memory.
    cmake --build "$work/build" --parallel 2
    cmake --install "$work/build"
    ldconfig
fi

lib="$(ldconfig -p | awk '/liblsl\.so/ {print $NF; exit}')"
if [[ -z "$lib" ]]; then
    echo "liblsl was installed but the dynamic loader does not see it; check ${PREFIX}/lib is in /etc/ld.so.conf.d" >&2
    exit 1
fi
echo "liblsl installed: $lib"
echo "pylsl finds it through the system search path; if not, add to the service environment:"
echo "  PYLSL_LIB=$lib"
if command -v python3 >/dev/null; then
    PYLSL_LIB="$lib" python3 -c "import pylsl; print('pylsl OK, liblsl version', pylsl.library_version())" \
        || echo "(pylsl not importable by this python3; test inside the emotion-edge virtualenv)"
fi
