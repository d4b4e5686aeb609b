#!/usr/bin/env bash
# Install one tier of the loyalty platform (center, store node or POS agent) on a
# Debian/Ubuntu host: system user, folders, config, virtualenv, systemd unit.
# Safe to re-run: an existing /etc/loyalty/<tier>.toml is never overwritten.
set -euo pipefail

readonly PROG=${0##*/}
SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
readonly SCRIPT_DIR
readonly TIERS=(center store pos)
readonly SERVICE_USER=loyalty

usage() {
    cat <<EOF
Usage: $PROG --tier center|store|pos [options]

Installs one tier of the loyalty platform:
  system user and group '$SERVICE_USER'
  /opt/loyalty/venv                 virtualenv with the project installed
  /etc/loyalty/<tier>.toml          config, copied from the example only if absent
  /var/lib/loyalty/<tier>           data dir
  /etc/systemd/system/loyalty-<tier>.service, enabled and started

Options:
  --tier TIER      center, store or pos (required)
  --root DIR       perform file actions under DIR instead of / (image building,
                   tests); no user is created and systemctl is not run
  --dry-run        print every action and change nothing
  --source DIR     project source to pip install (default: $(dirname "$SCRIPT_DIR"))
  --python PY      Python 3.11+ used to create the virtualenv (default: python3)
  --no-venv        do not create the virtualenv or pip install
  --no-start       enable the unit but do not start it now
  -h, --help       show this help
EOF
}

usage_error() {
    printf '%s: error: %s\n\n' "$PROG" "$1" >&2
    usage >&2
    exit 2
}

die() {
    printf '%s: error: %s\n' "$PROG" "$1" >&2
    exit 1
}

step() { printf '==> %s\n' "$*"; }
note() { printf '    note: %s\n' "$*"; }

# Print the command, then run it unless --dry-run.
run() {
    local quoted
    quoted=$(printf '%q ' "$@")
    if ((DRY_RUN)); then
        printf '    would run: %s\n' "${quoted% }"
    else
        printf '    + %s\n' "${quoted% }"
        "$@"
    fi
}

# The numeric id of NAME in the target's passwd/group file (empty if absent).
target_id() {
    local db=$1 name=$2
    if ((ON_HOST)); then
        getent "$db" "$name" | cut -d: -f3
    elif [[ -r $PREFIX/etc/$db ]]; then
        awk -F: -v n="$name" '$1 == n { print $3; exit }' "$PREFIX/etc/$db"
    fi
}

TIER=""
ROOT="/"
DRY_RUN=0
SOURCE=$(dirname "$SCRIPT_DIR")
PYTHON=python3
WITH_VENV=1
START=1

need_value() {
    [[ $# -ge 2 && -n $2 && $2 != --* ]] || usage_error "option $1 needs a value"
}

while [[ $# -gt 0 ]]; do
    case $1 in
        --tier | --root | --source | --python)
            need_value "$@"
            case $1 in
                --tier) TIER=$2 ;;
                --root) ROOT=$2 ;;
                --source) SOURCE=$2 ;;
                --python) PYTHON=$2 ;;
            esac
            shift 2
            ;;
        --tier=* | --root=* | --source=* | --python=*)
            value=${1#*=}
            [[ -n $value ]] || usage_error "option ${1%%=*} needs a value"
            case $1 in
                --tier=*) TIER=$value ;;
                --root=*) ROOT=$value ;;
                --source=*) SOURCE=$value ;;
                --python=*) PYTHON=$value ;;
            esac
            shift
            ;;
        --dry-run) DRY_RUN=1 && shift ;;
        --no-venv) WITH_VENV=0 && shift ;;
        --no-start) START=0 && shift ;;
        -h | --help) usage && exit 0 ;;
        *) usage_error "unknown argument '$1'" ;;
    esac
done

[[ -n $TIER ]] || usage_error "--tier is required (center, store or pos)"
case " ${TIERS[*]} " in
    *" $TIER "*) ;;
    *) usage_error "unknown tier '$TIER' (expected center, store or pos)" ;;
esac

[[ -d $ROOT ]] || usage_error "--root '$ROOT' is not a directory"
ROOT=$(cd "$ROOT" && pwd -P)
if [[ $ROOT == / ]]; then
    ON_HOST=1
    PREFIX=""
else
    ON_HOST=0
    PREFIX=$ROOT
fi

if ((WITH_VENV)); then
    # Console scripts embed the virtualenv's absolute path, so a venv built under
    # another root would point at the build directory once the image boots.
    ((ON_HOST)) || usage_error "--root other than / needs --no-venv (a virtualenv is not relocatable; build it on the target)"
    [[ -f $SOURCE/pyproject.toml ]] || usage_error "--source '$SOURCE' has no pyproject.toml"
    SOURCE=$(cd "$SOURCE" && pwd -P)
    command -v "$PYTHON" >/dev/null || usage_error "--python '$PYTHON' not found"
    "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' ||
        usage_error "--python '$PYTHON' is older than Python 3.11"
fi

if ((ON_HOST && !DRY_RUN && EUID != 0)); then
    die "installing on this host needs root (use sudo, or --dry-run / --root DIR)"
fi

readonly CONFIG_SRC=$SCRIPT_DIR/config/$TIER.toml
readonly UNIT_NAME=loyalty-$TIER.service
readonly UNIT_SRC=$SCRIPT_DIR/systemd/$UNIT_NAME
[[ -f $CONFIG_SRC ]] || die "example config $CONFIG_SRC is missing"
[[ -f $UNIT_SRC ]] || die "unit file $UNIT_SRC is missing"

readonly OPT_DIR=$PREFIX/opt/loyalty
readonly VENV_DIR=$OPT_DIR/venv
readonly ETC_DIR=$PREFIX/etc/loyalty
readonly CONFIG_DEST=$ETC_DIR/$TIER.toml
readonly STATE_PARENT=$PREFIX/var/lib/loyalty
readonly DATA_DIR=$STATE_PARENT/$TIER
readonly UNIT_DIR=$PREFIX/etc/systemd/system
readonly UNIT_DEST=$UNIT_DIR/$UNIT_NAME

printf 'Installing loyalty %s into %s%s\n' "$TIER" "$ROOT" "$( ((DRY_RUN)) && echo ' (dry run: nothing is changed)')"

step "system user and group '$SERVICE_USER'"
if ((!ON_HOST)); then
    note "skipped under --root $ROOT: create it on the target with" \
        "useradd --system --user-group --home-dir /var/lib/loyalty --shell /usr/sbin/nologin $SERVICE_USER"
else
    if getent group "$SERVICE_USER" >/dev/null; then
        note "group '$SERVICE_USER' exists"
    else
        run groupadd --system "$SERVICE_USER"
    fi
    if getent passwd "$SERVICE_USER" >/dev/null; then
        note "user '$SERVICE_USER' exists"
    else
        run useradd --system --gid "$SERVICE_USER" --home-dir /var/lib/loyalty --no-create-home \
            --shell /usr/sbin/nologin --comment "Loyalty platform" "$SERVICE_USER"
    fi
    if [[ $TIER == pos ]]; then
        # The unit's SupplementaryGroups= fails the start if a group is missing.
        for group in dialout lp; do
            getent group "$group" >/dev/null || run groupadd --system "$group"
        done
    fi
fi

# Ownership: names on this host (the user exists or is created above); numeric ids
# under --root when the target already knows the user; otherwise left to the caller.
owner_args=()
config_group_args=()
if ((ON_HOST)); then
    owner_args=(-o "$SERVICE_USER" -g "$SERVICE_USER")
    config_group_args=(-o root -g "$SERVICE_USER")
else
    uid=$(target_id passwd "$SERVICE_USER")
    gid=$(target_id group "$SERVICE_USER")
    if [[ -n $uid && -n $gid && $EUID -eq 0 ]]; then
        owner_args=(-o "$uid" -g "$gid")
        config_group_args=(-o 0 -g "$gid")
    fi
fi

step "folders"
run install -d -m 0755 "$OPT_DIR" "$ETC_DIR" "$STATE_PARENT"
run mkdir -p "$UNIT_DIR"
run install -d -m 0750 "${owner_args[@]}" "$DATA_DIR"

step "config $CONFIG_DEST"
if [[ -e $CONFIG_DEST ]]; then
    note "kept the existing $CONFIG_DEST (never overwritten); the shipped example is $CONFIG_SRC"
else
    # 0640: the Center's DSN may carry a password.
    run install -m 0640 "${config_group_args[@]}" "$CONFIG_SRC" "$CONFIG_DEST"
    note "edit it for this site, then check it with: loyalty-$TIER check-config --config /etc/loyalty/$TIER.toml"
fi
if ((${#config_group_args[@]} == 0)); then
    note "the '$SERVICE_USER' user is unknown under $ROOT: on the target run" \
        "chown -R $SERVICE_USER:$SERVICE_USER /var/lib/loyalty/$TIER && chgrp $SERVICE_USER /etc/loyalty/$TIER.toml"
fi

step "virtualenv $VENV_DIR"
if ((!WITH_VENV)); then
    note "skipped (--no-venv)"
else
    if [[ -x $VENV_DIR/bin/python ]]; then
        note "reusing the existing virtualenv"
    else
        run "$PYTHON" -m venv "$VENV_DIR"
    fi
    run "$VENV_DIR/bin/python" -m pip install --upgrade "$SOURCE"
    if ((!DRY_RUN)) && [[ ! -x $VENV_DIR/bin/loyalty-$TIER ]]; then
        die "pip install did not produce $VENV_DIR/bin/loyalty-$TIER"
    fi
fi

step "systemd unit $UNIT_DEST"
# Always replaced: it is ours. Local changes belong in a drop-in (systemctl edit).
run install -m 0644 "$UNIT_SRC" "$UNIT_DEST"

step "enable $UNIT_NAME"
if ((!ON_HOST)); then
    note "skipped under --root $ROOT: on the target run systemctl enable --now $UNIT_NAME" \
        "(or now: systemctl --root=$ROOT enable $UNIT_NAME)"
elif ((!DRY_RUN)) && [[ ! -d /run/systemd/system ]]; then
    note "systemd is not running on this host; once it is, run: systemctl daemon-reload && systemctl enable --now $UNIT_NAME"
else
    run systemctl daemon-reload
    if ((START)); then
        run systemctl enable --now "$UNIT_NAME"
    else
        run systemctl enable "$UNIT_NAME"
    fi
fi

if ((DRY_RUN)); then
    printf 'Dry run complete: nothing was changed.\n'
else
    printf 'Done. Logs: journalctl -u %s; status: systemctl status %s\n' "$UNIT_NAME" "$UNIT_NAME"
fi
