#!/usr/bin/env bash
# Removes the Kopilka till agent. The configuration and the data folder (SQLite cache, outbox
# with sales not yet sent, device credential) stay unless --purge is given.
set -euo pipefail
# shellcheck source=common.sh
. "$(dirname "$0")/common.sh"

usage() {
    cat <<'USAGE'
uninstall.sh [--purge] [--root DIR]

  --purge     also delete /etc/kopilka-agent, /var/lib/kopilka-agent (with any sales still in
              the outbox), the backups and the kopilka user
  --root DIR  work on files laid out under DIR by install.sh --root
USAGE
}

parse_options "$@"

if systemd_running; then
    systemctl disable --now "$NAME" 2>/dev/null || true
fi
rm -f "$UNIT" "$RULE" "$CLI"
service daemon-reload
if on_system && command -v udevadm >/dev/null; then udevadm control --reload || true; fi
rm -rf "$OPT"
say "removed the program, its command, the unit and the udev rule"

if [ "$PURGE" -eq 1 ]; then
    rm -rf "$ETC" "$DATA" "$BACKUPS"
    if on_system && getent passwd "$SERVICE_USER" >/dev/null; then userdel "$SERVICE_USER" || true; fi
    say "purged the configuration, the data, the backups and the user"
else
    say "kept $ETC and $DATA (install.sh finds and uses them again; --purge deletes them)"
fi
