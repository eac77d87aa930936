#!/usr/bin/env bash
# Installs the Kopilka till agent as a systemd service. Step by step: docs/install.md.
set -euo pipefail
# shellcheck source=common.sh
. "$(dirname "$0")/common.sh"

usage() {
    cat <<'USAGE'
install.sh [--bundle DIR] [--config FILE] [--scanner VENDOR:PRODUCT] [--root DIR]

  --bundle DIR      the one-folder build (default: ./kopilka-agent beside this script, or
                    dist/kopilka-agent in a source tree)
  --config FILE     the till's agent.toml (default: the example, to be edited; an existing
                    /etc/kopilka-agent/agent.toml is kept unless this is given)
  --scanner V:P     USB ids of the ttyACM scanner that ModemManager must leave alone and that
                    gets /dev/kopilka-scanner (default: any ttyACM port)
  --root DIR        lay the files out under DIR; no users, systemd or udev (for packaging, tests)
USAGE
}

parse_options "$@"
find_bundle
[ ! -e "$OPT/current" ] || die "already installed ($(readlink "$OPT/current")); use upgrade.sh"

ensure_user
release=$(copy_release)
switch_current "$release"

mkdir -p "$ETC" "$DATA"
chmod 0750 "$ETC" "$DATA"
example_config=0
if [ -n "$CONFIG" ]; then
    install -m 0640 "$CONFIG" "$ETC/agent.toml"
    say "configuration: $ETC/agent.toml"
elif [ ! -f "$ETC/agent.toml" ]; then
    install -m 0640 "$HERE/agent.toml" "$ETC/agent.toml"
    example_config=1
    say "configuration: $ETC/agent.toml (the example)"
else
    say "configuration kept: $ETC/agent.toml"
fi
if on_system; then
    chown root:"$SERVICE_USER" "$ETC" "$ETC/agent.toml"
    chown "$SERVICE_USER:$SERVICE_USER" "$DATA"
fi
write_install_conf
install_units

service daemon-reload
service enable "$NAME"
if [ "$example_config" -eq 1 ]; then
    say "edit $ETC/agent.toml (store, printers, scanners), then: systemctl start $NAME"
else
    service restart "$NAME"
    wait_active
fi
say "installed $VERSION"
