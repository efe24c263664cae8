#!/usr/bin/env bash
# Offline installer of an emotion-edge device bundle (built with `emotion-export bundle --target ...`).
# Usage, from the unpacked bundle directory:  sudo ./install.sh [--no-systemd]
# Needs no network. Safe to re-run: an update replaces the program, models and liblsl, keeps
# /etc/emotion-edge/config.toml (the new default goes beside it as config.toml.new) and the secrets file.
# Tests and image builders only: EMOTION_EDGE_ROOT=DIR installs under DIR and leaves users and systemd
# alone (the service user, EMOTION_EDGE_USER, default emotion-edge, must exist then).
set -euo pipefail
umask 022
export PIP_CONFIG_FILE=/dev/null PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1

bundle=$(cd "$(dirname "$0")" && pwd)
root=${EMOTION_EDGE_ROOT:-}
user=${EMOTION_EDGE_USER:-emotion-edge}
opt=$root/opt/emotion-edge
etc=$root/etc/emotion-edge
venv=$opt/venv
systemd=1
for arg in "$@"; do
  case $arg in
    --no-systemd) systemd=0 ;;
    -h|--help) sed -n '2,7s/^# \{0,1\}//p' "$0"; exit 0 ;;
    *) echo "install.sh: unknown option $arg; usage: sudo ./install.sh [--no-systemd]" >&2; exit 2 ;;
  esac
done
step() { echo "==> $*"; }
fail() { echo "install.sh: $*" >&2; exit 2; }

[ "$(id -u)" -eq 0 ] || fail "must run as root: sudo $0 $*"
[ -f "$bundle/bundle.json" ] || fail "no bundle.json beside install.sh: run it from the unpacked bundle directory"
command -v python3 >/dev/null || fail "python3 not found: install it with \`apt install python3 python3-venv\`"
field() { python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$bundle/bundle.json" "$1"; }
want_machine=$(field machine); want_python=$(field python); target=$(field target)
have_machine=$(uname -m); have_python=$(python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])')
if [ "$want_machine/$want_python" != "$have_machine/$have_python" ]; then
  case $have_machine/$have_python in
    aarch64/3.10) hint=jetson-aarch64 ;; aarch64/*) hint=pi-aarch64 ;; *) hint=$have_machine ;;
  esac
  fail "this bundle is for $want_machine / Python $want_python, this machine is $have_machine / Python $have_python: build one with \`emotion-export bundle --target $hint\`"
fi
step "bundle $target $(field version) matches this machine ($have_machine, Python $have_python)"

damaged=$(python3 - "$bundle" <<'EOF'
import hashlib, json, sys
from pathlib import Path
bundle = Path(sys.argv[1])
for name, digest in json.loads((bundle / "bundle.json").read_text())["files"].items():
    path = bundle / name
    if not path.is_file() or hashlib.sha256(path.read_bytes()).hexdigest() != digest:
        print(name)
        sys.exit(1)
EOF
) || fail "the bundle is damaged ($damaged does not match bundle.json): copy the .tar.gz again and unpack it afresh"
step "every bundle file matches its sha256 in bundle.json"

python3 -c 'import ensurepip, venv' 2>/dev/null || fail "python3 cannot make virtual environments: install them with \`apt install python3-venv\`"
libraries=$(ldconfig -p)
for lib in libportaudio.so.2:libportaudio2 libsndfile.so.1:libsndfile1; do
  grep -qF "${lib%%:*}" <<<"$libraries" || echo "    warning: ${lib##*:} is missing (needed for the microphone / WAV files): \`apt install ${lib##*:}\`"
done
step "python3-venv present"

if [ -z "$root" ]; then
  if ! id "$user" >/dev/null 2>&1; then
    groups=$(for group in video audio; do getent group "$group" >/dev/null && printf '%s,' "$group"; done)
    useradd --system --user-group --home-dir /var/lib/emotion-edge --no-create-home --shell /usr/sbin/nologin \
      ${groups:+--groups "${groups%,}"} "$user"
  fi
  step "system user $user ($(id -nG "$user" | tr ' ' ','))"
else
  id "$user" >/dev/null 2>&1 || fail "EMOTION_EDGE_ROOT is set, so the service user $user must exist already"
fi
group=$(id -gn "$user")

# Remade when half-made (no working pip) or made differently (a Pi venv must see apt's picamera2).
if [ "$(field system_site_packages)" = True ]; then site=true; else site=false; fi
if ! "$venv/bin/python" -m pip --version >/dev/null 2>&1 \
   || ! grep -qx "include-system-site-packages = $site" "$venv/pyvenv.cfg"; then
  rm -rf "$venv"
  if [ "$site" = true ]; then python3 -m venv --system-site-packages "$venv"; else python3 -m venv "$venv"; fi
fi
pip_install() {
  "$venv/bin/python" -m pip install -q --no-index "$@" \
    || fail "pip could not install the bundle's wheels into $venv (its message is above): build the bundle again with \`emotion-export bundle --target $target\`"
}
pip_install --find-links "$bundle/wheels" --require-hashes -r "$bundle/wheels/runtime.lock"
pip_install --no-deps --force-reinstall "$bundle"/wheels/emotion_edge-*.whl
step "program installed offline into $venv"

install_tree() {  # SOURCE DEST: copy beside DEST, fix modes, then swap it in by rename
  local new="$2.new.$$" old="$2.old.$$"
  rm -rf "$new"; cp -r "$1" "$new"
  chown -R root:root "$new"; find "$new" -type d -exec chmod 0755 {} +; find "$new" -type f -exec chmod 0644 {} +
  if [ -e "$2" ]; then mv -T "$2" "$old"; fi
  mv -T "$new" "$2"; rm -rf "$old"
}
mkdir -p "$opt/models" "$opt/lib"
chmod 0755 "$opt" "$opt/models" "$opt/lib"
for modality in face voice; do
  if [ -d "$bundle/models/$modality" ]; then install_tree "$bundle/models/$modality" "$opt/models/$modality"; fi
done
install -m 0644 -o root -g root "$bundle/liblsl/liblsl.so" "$opt/lib/.liblsl.so.new"
mv -T "$opt/lib/.liblsl.so.new" "$opt/lib/liblsl.so"
step "models in $opt/models ($(echo $(ls "$opt/models"))), liblsl in $opt/lib"

mkdir -p "$etc"; chmod 0755 "$etc"
if [ -e "$etc/config.toml" ]; then
  install -m 0640 -o root -g "$group" "$bundle/config/config.toml" "$etc/config.toml.new"
  chown "root:$group" "$etc/config.toml"; chmod 0640 "$etc/config.toml"
  step "kept your $etc/config.toml; this bundle's default is beside it as config.toml.new (compare: diff $etc/config.toml $etc/config.toml.new)"
else
  install -m 0640 -o root -g "$group" "$bundle/config/config.toml" "$etc/.config.toml.new"
  mv -T "$etc/.config.toml.new" "$etc/config.toml"
  step "config $etc/config.toml installed ($target profile): edit it, e.g. mqtt.host"
fi
if [ ! -e "$etc/env" ]; then
  ( umask 077; cat > "$etc/.env.new" <<'EOF'
# Secrets for emotion-edge (read by systemd, never printed). Uncomment and fill in, then:
#   sudo systemctl restart emotion-edge
# EMOTION_EDGE_MQTT_USERNAME=
# EMOTION_EDGE_MQTT_PASSWORD=
EOF
  ); mv -T "$etc/.env.new" "$etc/env"
fi
chown root:root "$etc/env"; chmod 0600 "$etc/env"
step "secrets file $etc/env (root only, 0600)"

# From /: the bundle may sit in a home directory the service user cannot enter.
as_user() { (cd / && runuser -u "$user" -- env PYLSL_LIB="$opt/lib/liblsl.so" "$@"); }
# Staged under EMOTION_EDGE_ROOT the config's /opt/... model paths are not yet where the models are; the
# models themselves are checked below either way.
if ! output=$(as_user "$venv/bin/emotion-edge" check-config ${root:+--no-model-check} "$etc/config.toml" 2>&1); then
  problem=$(printf '%s\n' "$output" | grep -m1 'emotion-edge: error:' || true)
  [ -n "$problem" ] || fail "the service user $user cannot run $venv/bin/emotion-edge ($(printf '%s\n' "$output" | tail -n1)); the running service was left as it was"
  fail "${problem#emotion-edge: error: }; fix it and run ./install.sh again (the running service was left as it was)"
fi
problem=$(as_user "$venv/bin/python" - "$opt/models" 2>&1 <<'EOF'
import sys
from pathlib import Path
from edge.errors import EdgeError
from edge.manifest import load_manifest
try:
    for directory in sorted(Path(sys.argv[1]).iterdir()):
        manifests = [path for path in directory.iterdir() if path.suffix == ".json" and path.name != "parity.json"]
        if not manifests:
            raise EdgeError(f"{directory} has no model manifests")
        for path in manifests:
            load_manifest(path)
except (EdgeError, OSError) as exc:
    print(exc)
    sys.exit(1)
EOF
) || fail "the service user $user cannot use the models in $opt/models ($problem); the running service was left as it was"
step "config and models checked as user $user: OK"

if [ "$systemd" = 1 ] && [ -z "$root" ]; then
  install -m 0644 "$bundle/systemd/emotion-edge.service" /etc/systemd/system/.emotion-edge.service.new
  mv -T /etc/systemd/system/.emotion-edge.service.new /etc/systemd/system/emotion-edge.service
  systemctl daemon-reload
  systemctl enable -q emotion-edge
  systemctl restart emotion-edge
  step "service emotion-edge enabled and (re)started; follow it with: journalctl -u emotion-edge -f"
else
  step "systemd left alone (--no-systemd or EMOTION_EDGE_ROOT); the unit is in $bundle/systemd"
fi
