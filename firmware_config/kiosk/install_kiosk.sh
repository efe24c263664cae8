#!/usr/bin/env bash
# Turn a Raspberry Pi with a screen into the emotion-edge kiosk: at login the desktop shows the dashboard full screen.
# Usage, as the desktop user (e.g. pi), from this directory:  ./install_kiosk.sh [--port 8765] [--no-blanking-change]
# Installs ~/.local/bin/emotion-edge-kiosk, the systemd --user unit emotion-edge-kiosk.service and autostart entries
# for the Raspberry Pi OS desktops (labwc, Wayfire, LXDE/X11: each runs `emotion-edge-kiosk --session`, which starts
# the unit; starting it twice is harmless), turns screen blanking off (raspi-config, needs sudo) and sets the
# console autologin into the desktop (raspi-config B4). The runtime needs `[dashboard] enabled = true`.
# Safe to re-run. Tests only: KIOSK_NO_SYSTEM=1 leaves systemctl and raspi-config alone.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
port=8765
blanking=1
while [ $# -gt 0 ]; do
  case $1 in
    --port) port=${2:?--port needs a number}; shift ;;
    --no-blanking-change) blanking=0 ;;
    -h|--help) sed -n '2,8s/^# \{0,1\}//p' "$0"; exit 0 ;;
    *) echo "install_kiosk.sh: unknown option $1; usage: ./install_kiosk.sh [--port N] [--no-blanking-change]" >&2; exit 2 ;;
  esac
  shift
done
case $port in ''|*[!0-9]*) echo "install_kiosk.sh: --port must be a number, not $port" >&2; exit 2 ;; esac
[ "$(id -u)" -ne 0 ] || [ -n "${KIOSK_NO_SYSTEM:-}" ] || { echo "install_kiosk.sh: run it as the desktop user (e.g. pi), not root: it installs into that user's home" >&2; exit 2; }
step() { echo "==> $*"; }
config=${XDG_CONFIG_HOME:-$HOME/.config}
system=$([ -z "${KIOSK_NO_SYSTEM:-}" ] && echo 1 || echo 0)

install -D -m 0755 "$here/emotion-edge-kiosk" "$HOME/.local/bin/emotion-edge-kiosk"
install -D -m 0644 "$here/emotion-edge-kiosk.service" "$config/systemd/user/emotion-edge-kiosk.service"
printf 'KIOSK_URL=http://127.0.0.1:%s/\n' "$port" > "$config/.emotion-edge-kiosk.env.tmp"
mv -f "$config/.emotion-edge-kiosk.env.tmp" "$config/emotion-edge-kiosk.env"
step "installed ~/.local/bin/emotion-edge-kiosk and the user unit emotion-edge-kiosk.service (dashboard port $port)"

launch="$HOME/.local/bin/emotion-edge-kiosk --session"
mkdir -p "$config/autostart" "$config/labwc"
cat > "$config/autostart/emotion-edge-kiosk.desktop" <<DESKTOP
[Desktop Entry]
Type=Application
Name=emotion-edge kiosk
Comment=Chromium full screen on the emotion-edge dashboard
Exec=$launch
X-GNOME-Autostart-enabled=true
DESKTOP
touch "$config/labwc/autostart"
grep -qF "$launch" "$config/labwc/autostart" || echo "$launch &" >> "$config/labwc/autostart"
if [ -f "$config/wayfire.ini" ] && ! grep -qF "$launch" "$config/wayfire.ini"; then
  if grep -q '^\[autostart\]' "$config/wayfire.ini"; then
    sed -i "/^\[autostart\]/a emotion_edge_kiosk = $launch" "$config/wayfire.ini"
  else
    printf '\n[autostart]\nemotion_edge_kiosk = %s\n' "$launch" >> "$config/wayfire.ini"
  fi
fi
step "autostart: ~/.config/autostart (LXDE/X11 and XDG), ~/.config/labwc/autostart$([ -f "$config/wayfire.ini" ] && echo ', ~/.config/wayfire.ini')"

if [ "$system" = 1 ]; then
  systemctl --user daemon-reload && systemctl --user enable emotion-edge-kiosk.service \
    || echo "install_kiosk.sh: no systemd user manager here: the autostart runs the kiosk directly instead" >&2
  if command -v raspi-config >/dev/null; then
    [ "$blanking" = 0 ] || sudo raspi-config nonint do_blanking 1  # 1 = blanking off
    sudo raspi-config nonint do_boot_behaviour B4  # boot into the desktop, logged in as this user
    step "screen blanking off, desktop autologin on (raspi-config)"
  else
    echo "install_kiosk.sh: raspi-config not found: turn screen blanking off in your desktop's settings" >&2
  fi
  command -v chromium >/dev/null || command -v chromium-browser >/dev/null \
    || echo "install_kiosk.sh: Chromium is missing: sudo apt install chromium" >&2
fi
if (exec 9<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
  step "the dashboard answers on http://127.0.0.1:$port/"
else
  echo "install_kiosk.sh: nothing answers on port $port yet: set [dashboard] enabled = true (and port = $port) in" \
       "/etc/emotion-edge/config.toml, then: sudo systemctl restart emotion-edge" >&2
fi
step "done: reboot (or log out and in) to start the kiosk; stop it with: systemctl --user stop emotion-edge-kiosk"
