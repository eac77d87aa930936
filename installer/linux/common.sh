# Shared by install.sh, upgrade.sh and uninstall.sh: paths, options, and the steps they share.
# shellcheck shell=bash disable=SC2034  # the variables are used by the scripts that source it

NAME=kopilka-agent
SERVICE_USER=kopilka
DEVICE_GROUPS="dialout lp input"
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
RELEASES_KEPT=2 # the running release and the one before it
BACKUPS_KEPT=3

ROOT=""    # --root DIR: lay the files out under DIR instead of /, touch no users or services
BUNDLE=""  # --bundle DIR: the one-folder build; default ./kopilka-agent or ../../dist/...
CONFIG=""  # --config FILE: the agent.toml to install
SCANNER="" # --scanner VENDOR:PRODUCT
PURGE=0

# UTC, to the millisecond: names that sort in the order things were done.
stamp() { date -u +%Y%m%dT%H%M%S.%3NZ; }

say() { printf '%s: %s\n' "$(basename "$0")" "$*"; }
die() {
    say "$*" >&2
    exit 1
}

set_paths() {
    OPT=$ROOT/opt/$NAME
    ETC=$ROOT/etc/$NAME
    DATA=$ROOT/var/lib/$NAME
    BACKUPS=$ROOT/var/backups/$NAME
    UNIT=$ROOT/etc/systemd/system/$NAME.service
    RULE=$ROOT/etc/udev/rules.d/70-kopilka-scanner.rules
    INSTALL_CONF=$ETC/install.conf
    CLI=$ROOT/usr/local/bin/$NAME
}

parse_options() {
    while [ $# -gt 0 ]; do
        case $1 in
        --root) ROOT=${2:?--root needs a folder}; shift 2 ;;
        --bundle) BUNDLE=${2:?--bundle needs a folder}; shift 2 ;;
        --config) CONFIG=${2:?--config needs a file}; shift 2 ;;
        --scanner) SCANNER=${2:?--scanner needs VENDOR:PRODUCT}; shift 2 ;;
        --purge) PURGE=1; shift ;;
        -h | --help) usage; exit 0 ;;
        *) usage >&2; exit 2 ;;
        esac
    done
    if [ -n "$ROOT" ]; then
        mkdir -p "$ROOT"
        ROOT=$(cd "$ROOT" && pwd)
    elif [ "$(id -u)" -ne 0 ]; then
        die "run as root (or with --root DIR to lay the files out in a folder)"
    fi
    if [ -n "$SCANNER" ] && ! [[ $SCANNER =~ ^[0-9a-fA-F]{4}:[0-9a-fA-F]{4}$ ]]; then
        die "--scanner takes the USB ids as lsusb shows them, e.g. 0c2e:0b61"
    fi
    set_paths
}

# The system's side of things: users, systemd, udev. Skipped under --root.
on_system() { [ -z "$ROOT" ]; }
systemd_running() { on_system && [ -d /run/systemd/system ]; }

find_bundle() {
    if [ -z "$BUNDLE" ]; then
        for candidate in "$HERE/$NAME" "$HERE/../../dist/$NAME"; do
            if [ -x "$candidate/$NAME" ]; then
                BUNDLE=$candidate
                break
            fi
        done
    fi
    if [ -z "$BUNDLE" ] || [ ! -x "$BUNDLE/$NAME" ]; then
        die "no build found; give --bundle DIR (the folder with $NAME in it)"
    fi
    BUNDLE=$(cd "$BUNDLE" && pwd)
    # Running it proves the build works on this machine (C library, architecture) before
    # anything is changed.
    local banner
    banner=$("$BUNDLE/$NAME" --version) || die "$BUNDLE/$NAME does not run on this machine"
    VERSION=$(printf '%s\n' "$banner" | awk '$1 == "kopilka-agent" { print $2; exit }')
    [ -n "$VERSION" ] || die "$BUNDLE/$NAME --version printed '$banner'"
    say "build $BUNDLE: $banner"
}

ensure_user() {
    if ! on_system; then
        say "skipped under --root: user $SERVICE_USER, groups $DEVICE_GROUPS"
        return
    fi
    local group
    for group in $DEVICE_GROUPS; do
        getent group "$group" >/dev/null || groupadd --system "$group"
    done
    if ! getent passwd "$SERVICE_USER" >/dev/null; then
        useradd --system --user-group --home-dir "/var/lib/$NAME" --no-create-home \
            --shell /usr/sbin/nologin --comment "Kopilka till agent" "$SERVICE_USER"
    fi
    # The unit adds these groups by itself; membership also lets `sudo -u kopilka
    # kopilka-agent doctor` see the devices the service sees.
    usermod --append --groups "${DEVICE_GROUPS// /,}" "$SERVICE_USER"
}

# Copies the build into releases/TIME-VERSION with its file times (the escpos pickle must stay
# newer than its JSON) and prints the new release's folder.
copy_release() {
    local release
    release=$OPT/releases/$(stamp)-$VERSION
    mkdir -p "$OPT/releases"
    rm -rf "$release.partial"
    cp -a "$BUNDLE" "$release.partial"
    chmod -R go-w,a+rX "$release.partial"
    if on_system; then chown -R root:root "$release.partial"; fi
    mv -T "$release.partial" "$release"
    printf '%s\n' "$release"
}

# Points opt/kopilka-agent/current at a release in one rename.
switch_current() {
    ln -sfn "releases/$(basename "$1")" "$OPT/current.new"
    mv -T "$OPT/current.new" "$OPT/current"
    say "current release: $(readlink "$OPT/current")"
}

prune_releases() {
    local keep current
    current=$(basename "$(readlink "$OPT/current")")
    keep=$RELEASES_KEPT
    # Newest first (by name: install time); the current release is always kept.
    find "$OPT/releases" -mindepth 1 -maxdepth 1 -type d -printf '%f\n' | sort -r |
        while read -r release; do
            if [ "$release" = "$current" ]; then continue; fi
            keep=$((keep - 1))
            if [ "$keep" -le 0 ]; then rm -rf "${OPT:?}/releases/$release"; fi
        done
}

install_units() {
    mkdir -p "$(dirname "$UNIT")" "$(dirname "$RULE")" "$(dirname "$CLI")"
    install -m 0644 "$HERE/$NAME.service" "$UNIT"
    install -m 0755 "$HERE/$NAME-cli" "$CLI"
    local vendor='?*' product='?*'
    if [ -n "$SCANNER" ]; then
        vendor=${SCANNER%%:*}
        product=${SCANNER##*:}
    fi
    sed -e "s/@VENDOR@/${vendor,,}/" -e "s/@PRODUCT@/${product,,}/" \
        "$HERE/70-kopilka-scanner.rules" >"$RULE.new"
    chmod 0644 "$RULE.new"
    mv -T "$RULE.new" "$RULE"
    if on_system && command -v udevadm >/dev/null; then
        udevadm control --reload || say "udevadm could not reload the rules (no udev running?)"
        udevadm trigger --subsystem-match=tty --action=change || true
    fi
}

write_install_conf() {
    mkdir -p "$ETC"
    printf '# Written by install.sh; upgrade.sh reads it.\nSCANNER=%s\n' "$SCANNER" >"$INSTALL_CONF"
}

read_install_conf() {
    if [ -z "$SCANNER" ] && [ -f "$INSTALL_CONF" ]; then
        SCANNER=$(sed -n 's/^SCANNER=//p' "$INSTALL_CONF")
    fi
}

service() {
    if systemd_running; then
        systemctl "$@"
    else
        say "skipped (systemd is not running here): systemctl $*"
    fi
}

# Says whether the service came up and stayed up (the same process after a few seconds, so a
# crash loop under Restart=on-failure does not pass for a running agent).
wait_active() {
    systemd_running || return 0
    local first second
    sleep 2
    first=$(systemctl show -p MainPID --value "$NAME")
    sleep 4
    second=$(systemctl show -p MainPID --value "$NAME")
    if systemctl is-active --quiet "$NAME" && [ "$first" != 0 ] && [ "$first" = "$second" ]; then
        say "$NAME is running (pid $second)"
        return 0
    fi
    say "$NAME did not stay up; see: journalctl -u $NAME -n 50" >&2
    return 1
}
