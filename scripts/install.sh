#!/bin/sh
# Install pywats-client from this offline bundle: no network, no package index.
#
#   sh install.sh [--prefix VENV_DIR] [--python PYTHON] [--instance NAME [--systemd]]
#
# Checks every file against SHA256SUMS, checks that this Python matches the bundle, creates
# (or upgrades in place) a virtual environment, installs the bundled wheels with
# `pip install --no-index`, and with --systemd installs the systemd units. Instance data
# (config, secret key, queue) lives outside the venv and is never touched, so running a newer
# bundle's install.sh over an existing venv is the upgrade.
#
# build-wheelhouse writes bundle.env, SHA256SUMS, requirements.txt and wheels/ beside this file.
set -eu

HERE=$(cd "$(dirname "$0")" && pwd)
PREFIX=/opt/pywats
PYTHON=python3
INSTANCE=""
SYSTEMD=0
UNIT_DIR=/etc/systemd/system
DATA_DIR=/var/lib/pywats    # where the units keep instances (Environment=PYWATS_DATA_DIR)
SERVICE_USER=pywats         # User= in the units
DEFAULT_PREFIX=/opt/pywats  # the ExecStart path written in the unit templates

say() { printf 'install.sh: %s\n' "$*"; }
die() { printf 'install.sh: error: %s\n' "$*" >&2; exit 1; }

usage() {
    cat <<EOF
usage: sh install.sh [--prefix VENV_DIR] [--python PYTHON] [--instance NAME [--systemd]]

  --prefix VENV_DIR  the virtual environment to create or upgrade (default $DEFAULT_PREFIX)
  --python PYTHON    the Python to build it with (default python3)
  --instance NAME    the instance the next steps are printed for
  --systemd          also install the systemd units (needs root), create the '$SERVICE_USER'
                     user and $DATA_DIR; without systemd, print what it would do
EOF
}

while [ $# -gt 0 ]; do
    case "$1" in
        --prefix) [ $# -ge 2 ] || die "--prefix needs a folder"; PREFIX=$2; shift 2 ;;
        --prefix=*) PREFIX=${1#--prefix=}; shift ;;
        --python) [ $# -ge 2 ] || die "--python needs a command or path"; PYTHON=$2; shift 2 ;;
        --python=*) PYTHON=${1#--python=}; shift ;;
        --instance) [ $# -ge 2 ] || die "--instance needs a name"; INSTANCE=$2; shift 2 ;;
        --instance=*) INSTANCE=${1#--instance=}; shift ;;
        --systemd) SYSTEMD=1; shift ;;
        -h|--help) usage; exit 0 ;;
        *) usage >&2; die "unknown option '$1'" ;;
    esac
done

case "$PREFIX" in
    /*) ;;
    *) PREFIX="$(pwd)/$PREFIX" ;;  # the unit files and the printed commands need a full path
esac
if [ -n "$INSTANCE" ] && ! printf '%s' "$INSTANCE" | grep -Eq '^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$'
then
    die "invalid instance name '$INSTANCE': use 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit"
fi
if [ "$SYSTEMD" = 1 ] && [ "$(id -u)" != 0 ]; then
    die "--systemd writes to $UNIT_DIR and creates the '$SERVICE_USER' user: run it as root (sudo sh $0 ...)"
fi

# -- the bundle -------------------------------------------------------------------------------

[ -f "$HERE/bundle.env" ] || die "$HERE/bundle.env is missing: run install.sh from an unpacked bundle made by scripts/build-wheelhouse"
value() { sed -n "s/^$1=//p" "$HERE/bundle.env" | head -n 1; }
VERSION=$(value VERSION)
TARGET=$(value TARGET)
PY_VERSION=$(value PYTHON)
SYSTEM_PACKAGES=$(value SYSTEM_PACKAGES)

command -v sha256sum >/dev/null 2>&1 || die "sha256sum is not installed (it is part of coreutils or busybox); it is needed to check the bundle"
[ -f "$HERE/SHA256SUMS" ] || die "$HERE/SHA256SUMS is missing: the bundle is incomplete; copy the .tar.gz again and unpack it whole"
if ! checked=$(cd "$HERE" && sha256sum -c SHA256SUMS 2>&1); then
    printf '%s\n' "$checked" | grep -v ': OK$' >&2 || true
    die "the bundle is damaged (the files above do not match SHA256SUMS): copy the .tar.gz again and check it with 'sha256sum' against the build machine"
fi
# pip would use any wheel in wheels/, so nothing may be there that the checksums do not cover.
for wheel in "$HERE"/wheels/*.whl; do
    [ -e "$wheel" ] || die "$HERE/wheels/ holds no wheels: the bundle is incomplete"
    grep -q " wheels/$(basename "$wheel")\$" "$HERE/SHA256SUMS" \
        || die "wheels/$(basename "$wheel") is not listed in SHA256SUMS: remove it, or copy the bundle again"
done
say "bundle pywats-client $VERSION for $TARGET, Python $PY_VERSION: checksums OK"

# -- this machine's Python ----------------------------------------------------------------------

command -v "$PYTHON" >/dev/null 2>&1 || die "'$PYTHON' not found: install Python $PY_VERSION (apt install python3 python3-venv), or name it with --python"
HAVE_VERSION=$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])') \
    || die "'$PYTHON' does not run"
# The platform as pip sees it: a 32-bit Python on a 64-bit kernel (Raspberry Pi OS 32-bit on a
# Pi 4 or 5) says aarch64 in uname but needs armv7l wheels.
HAVE_TARGET=$("$PYTHON" -c '
import sys, sysconfig
platform = sysconfig.get_platform().replace("-", "_").replace(".", "_")
if sys.maxsize <= 2**32:
    platform = {"linux_x86_64": "linux_i686", "linux_aarch64": "linux_armv7l"}.get(platform, platform)
print(platform)')
if [ "$HAVE_VERSION" != "$PY_VERSION" ]; then
    die "this bundle is for Python $PY_VERSION but $PYTHON is Python $HAVE_VERSION: build a bundle with 'scripts/build-wheelhouse --python $HAVE_VERSION --target $HAVE_TARGET', or give --python python$PY_VERSION"
fi
if [ "$HAVE_TARGET" != "$TARGET" ]; then
    die "this bundle is for $TARGET but this Python runs as $HAVE_TARGET: build a bundle with 'scripts/build-wheelhouse --target $HAVE_TARGET --python $HAVE_VERSION'"
fi

# Dependencies without a wheel for this platform come from the distribution (build-wheelhouse
# said which); the venv then sees the system's site-packages.
SYSTEM_SITE=""
if [ -n "$SYSTEM_PACKAGES" ]; then
    SYSTEM_SITE=--system-site-packages
    for requirement in $SYSTEM_PACKAGES; do
        "$PYTHON" - "$requirement" <<'EOF' || exit 1
import importlib, re, sys
from importlib import metadata
requirement = sys.argv[1]
name, _, minimum = requirement.partition(">=")
module = {"cryptography": "cryptography.fernet"}.get(name, name.replace("-", "_"))
package = "python3-" + name.lower()
try:
    importlib.import_module(module)
    version = metadata.version(name)
except Exception as exc:
    sys.exit(f"install.sh: error: {name} is not bundled (no wheel exists for this platform) and "
             f"the system has none ({exc}). Fix: sudo apt install {package}, then run "
             "install.sh again")
def numbers(text):
    return tuple(int(n) for n in re.findall(r"\d+", text)[:3])
if minimum and numbers(version) < numbers(minimum):
    sys.exit(f"install.sh: error: the system's {name} is {version}, but pywats-client needs "
             f"{minimum} or newer and no wheel exists for this platform. Fix: a newer "
             f"distribution release (its {package}), or a 64-bit OS and the linux_aarch64 bundle")
print(f"install.sh: using the system's {name} {version} ({package})")
EOF
    done
fi

# -- the virtual environment --------------------------------------------------------------------

if [ -x "$PREFIX/bin/python" ]; then
    VENV_VERSION=$("$PREFIX/bin/python" -c 'import sys; print("%d.%d" % sys.version_info[:2])') \
        || die "$PREFIX/bin/python does not run: remove $PREFIX and run install.sh again (instance data is elsewhere and stays)"
    [ "$VENV_VERSION" = "$PY_VERSION" ] \
        || die "$PREFIX is a Python $VENV_VERSION venv, this bundle is for $PY_VERSION: remove $PREFIX (instance data is elsewhere and stays) or choose another --prefix"
    if [ -n "$SYSTEM_SITE" ] && ! grep -Eq '^include-system-site-packages *= *true' "$PREFIX/pyvenv.cfg"; then
        die "$PREFIX was made without --system-site-packages, which this bundle needs for $SYSTEM_PACKAGES: remove $PREFIX and run install.sh again"
    fi
    say "upgrading the existing venv $PREFIX in place"
else
    if [ -e "$PREFIX" ] && [ -n "$(ls -A "$PREFIX" 2>/dev/null)" ]; then
        die "$PREFIX exists and is not a Python venv: choose another --prefix, or remove it"
    fi
    "$PYTHON" -c 'import ensurepip, venv' 2>/dev/null \
        || die "$PYTHON cannot create virtual environments: install the venv module (Debian/Raspberry Pi OS: apt install python3-venv; on an air-gapped line copy its .deb files)"
    mkdir -p "$(dirname "$PREFIX")" 2>/dev/null || true
    [ -w "$(dirname "$PREFIX")" ] \
        || die "cannot create $PREFIX as $(id -un): run as root (sudo), or choose a --prefix you can write, e.g. --prefix \$HOME/pywats"
    say "creating the venv $PREFIX${SYSTEM_SITE:+ (with the system site-packages)}"
    "$PYTHON" -m venv $SYSTEM_SITE "$PREFIX" || die "'$PYTHON -m venv $PREFIX' failed (see above)"
fi

# Running services would pick up a mix of old and new modules: stop them for the upgrade.
SYSTEMD_UP=0
[ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1 && SYSTEMD_UP=1
STOPPED=""
if [ "$SYSTEMD_UP" = 1 ] && [ "$(id -u)" = 0 ]; then
    STOPPED=$(systemctl list-units --type=service --state=active --plain --no-legend \
        'pywats-client@*' 2>/dev/null | awk '{print $1}')
    for unit in $STOPPED; do
        say "stopping $unit for the upgrade (its queue stays where it is)"
        systemctl stop "$unit"
    done
fi

# --isolated: the user's pip.conf and PIP_* variables cannot add other indexes or wheels;
# exactly the checked wheels of this bundle are installed, at exactly their versions.
"$PREFIX/bin/python" -m pip --isolated --disable-pip-version-check --no-input install \
    --no-index --find-links "$HERE/wheels" --requirement "$HERE/requirements.txt" \
    || die "pip could not install from $HERE/wheels (see above); nothing outside $PREFIX was changed"
INSTALLED=$("$PREFIX/bin/pywats-client" --version) \
    || die "$PREFIX/bin/pywats-client does not run after the install (see above)"
say "installed $INSTALLED into $PREFIX"

# -- systemd ------------------------------------------------------------------------------------

# The unit files come from the installed package (`pywats-client systemd-unit`), with ExecStart
# naming this venv: the same files pip installs, one copy of each.
UNITS="pywats-client@.service pywats-client-once@.service pywats-client-once@.timer"
unit_option() {
    case "$1" in
        pywats-client-once@.service) echo --once ;;
        pywats-client-once@.timer) echo --timer ;;
        *) echo "" ;;
    esac
}
if [ "$SYSTEMD" = 1 ]; then
    "$PREFIX/bin/pywats-client" systemd-unit >/dev/null 2>&1 \
        || die "the installed pywats-client cannot print its systemd units ('pywats-client systemd-unit' failed): build the bundle from a newer checkout"
    if [ "$SYSTEMD_UP" = 1 ]; then
        if ! id "$SERVICE_USER" >/dev/null 2>&1; then
            say "creating the system user $SERVICE_USER"
            useradd --system --user-group --home-dir "$DATA_DIR" --shell /usr/sbin/nologin \
                "$SERVICE_USER"
        fi
        # An existing folder is left as it is: if it belongs to someone else (an older
        # root-run setup), systemd's StateDirectory= hands it and its contents to the user.
        [ -d "$DATA_DIR" ] || install -d -m 0700 -o "$SERVICE_USER" -g "$SERVICE_USER" "$DATA_DIR"
        for unit in $UNITS; do
            # shellcheck disable=SC2046 # the option is one word or none
            "$PREFIX/bin/pywats-client" systemd-unit $(unit_option "$unit") \
                --exec "$PREFIX/bin/pywats-client" > "$UNIT_DIR/$unit.tmp" \
                || die "could not write $UNIT_DIR/$unit"
            chmod 0644 "$UNIT_DIR/$unit.tmp"
            mv "$UNIT_DIR/$unit.tmp" "$UNIT_DIR/$unit"
            say "installed $UNIT_DIR/$unit"
        done
        systemctl daemon-reload
    else
        say "systemd is not running here, so nothing was installed for it. With systemd, this would:"
        say "  create the system user $SERVICE_USER (useradd --system --user-group --home-dir $DATA_DIR --shell /usr/sbin/nologin $SERVICE_USER)"
        say "  create $DATA_DIR if it is missing (owner $SERVICE_USER, mode 0700)"
        for unit in $UNITS; do
            say "  write $UNIT_DIR/$unit from '$PREFIX/bin/pywats-client systemd-unit $(unit_option "$unit")' (running $PREFIX/bin/pywats-client)"
        done
        say "  run systemctl daemon-reload"
        say "Without systemd, run it from cron instead: */5 * * * * $PREFIX/bin/pywats-client ${INSTANCE:+--instance $INSTANCE }start --once"
    fi
fi

for unit in $STOPPED; do
    say "starting $unit again"
    systemctl start "$unit"
done

# -- what next ----------------------------------------------------------------------------------

NAME=${INSTANCE:-default}
CLI="$PREFIX/bin/pywats-client"
echo
if [ "$SYSTEMD" = 1 ] && [ "$SYSTEMD_UP" = 1 ]; then
    AS="sudo -u $SERVICE_USER $CLI --data-dir $DATA_DIR --instance $NAME"
    if [ -f "$DATA_DIR/$NAME/config.json" ]; then
        echo "Instance '$NAME' is already configured ($DATA_DIR/$NAME/config.json, kept as it was)."
        echo "Next: systemctl enable --now pywats-client@$NAME, then: $AS doctor"
    else
        echo "Next: configure instance '$NAME' as the service user (the token from a root-only file, never on the command line):"
        echo "  $AS config init --non-interactive --server-url https://wats.example.com --station-name $NAME --api-token - < /root/$NAME.token"
        echo "  $AS config add-watch-folder /srv/pywats/$NAME   (the folder the equipment writes to)"
        echo "then start it: systemctl enable --now pywats-client@$NAME"
        echo "and check the station: $AS doctor"
    fi
else
    echo "Next: $CLI --instance $NAME config init"
    echo "  (or without prompts: $CLI --instance $NAME config init --non-interactive --server-url URL --api-token-file TOKEN_FILE)"
    echo "then: $CLI --instance $NAME doctor"
fi
if [ -z "$STOPPED" ] && [ "$SYSTEMD" = 0 ]; then
    echo "(Upgrading? A service started without systemd keeps running the old version until: $CLI --instance $NAME restart)"
fi
