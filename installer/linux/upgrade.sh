#!/usr/bin/env bash
# Replaces the installed agent with a new build. The data folder (SQLite cache, outbox, device
# credential, keys) and the configuration are not touched; a copy of the data folder taken while
# the service is stopped goes to /var/backups/kopilka-agent first. Step by step: docs/install.md.
set -euo pipefail
# shellcheck source=common.sh
. "$(dirname "$0")/common.sh"

usage() {
    cat <<'USAGE'
upgrade.sh [--bundle DIR] [--scanner VENDOR:PRODUCT] [--root DIR]

  --bundle DIR      the new one-folder build (default as in install.sh)
  --scanner V:P     change the scanner's USB ids (default: as installed)
  --root DIR        work on files laid out under DIR by install.sh --root
USAGE
}

parse_options "$@"
[ -z "$CONFIG" ] || die "upgrade.sh keeps the configuration; edit $ETC/agent.toml instead"
find_bundle
[ -L "$OPT/current" ] || die "not installed under $OPT; use install.sh"
previous=$(readlink "$OPT/current")
read_install_conf

# Copy first, so that the agent is down only for the switch.
release=$(copy_release)
service stop "$NAME"

backup=$BACKUPS/$(stamp)
mkdir -p "$BACKUPS"
chmod 0700 "$BACKUPS"
cp -a "$DATA" "$backup"
say "data copied to $backup (taken while stopped)"
find "$BACKUPS" -mindepth 1 -maxdepth 1 -type d -printf '%f\n' | sort -r | tail -n +$((BACKUPS_KEPT + 1)) |
    while read -r old; do rm -rf "${BACKUPS:?}/$old"; done

switch_current "$release"
install_units
write_install_conf
service daemon-reload
service start "$NAME"
if ! wait_active; then
    say "the previous release is still in $OPT/$previous; docs/install.md says how to go back" >&2
    exit 1
fi
prune_releases
say "upgraded to $VERSION (was $(basename "$previous"))"
