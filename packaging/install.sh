#!/usr/bin/env bash
# Installs the kiosk into a virtual environment, from the lock.
#
#   bash packaging/install.sh [VENV_DIR]     (default: .venv)
#
# Every package comes from packaging/lock/requirements.txt: the versions pinned there, each
# file checked against the sha256 recorded there (pip --require-hashes), installed without
# dependency resolution (--no-deps); then the project itself, editable. The venv ends up
# holding exactly the lock: packages it does not pin are uninstalled. `make lock` refreshes
# the lock; docs/install/locking.md explains it.
#  * The lock leaves out two packages that locked packages ask for, and --no-deps keeps
#    them out: the CPU-only `onnxruntime` (insightface's requirement), which shares its
#    package folder with `onnxruntime-gpu`, so onnxruntime-gpu is the only one (it runs on
#    the CPU too where there is no CUDA); and `dlib` (face_recognition's), an sdist that
#    compiles, whose module the prebuilt `dlib-bin` provides.
#  * KIOSK_TORCH_SPEC="torch==... torchvision==... [pip options]" installs another torch
#    build instead of the locked one, e.g. a CPU-only one from PyTorch's wheel index; the
#    packages only the locked build needs (packaging/lock/torch-build.txt) are left out.
#    That part is then not locked.
#  * The real-window test needs an X server (Xvfb) and the xcb libraries Qt loads.
#  * The site tests need PostgreSQL's server programs (Debian's postgresql package).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${1:-.venv}"
PY="${PYTHON:-python3}"
LOCK=packaging/lock/requirements.txt
TORCH_SPEC="${KIOSK_TORCH_SPEC:-}"

if [[ "${KIOSK_SKIP_SYSTEM_DEPS:-0}" != 1 ]] && ! command -v Xvfb >/dev/null 2>&1; then
    pkgs=(xvfb xauth libxcb-icccm4 libxcb-keysyms1 libxcb-cursor0 libxcb-image0
          libxcb-render-util0 libxcb-shape0 libxcb-xinerama0 libxcb-xkb1 libxkbcommon-x11-0
          libegl1 libgl1 libfontconfig1 libdbus-1-3)
    if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null 2>&1; then
        echo "install.sh: installing system packages for Qt and Xvfb: ${pkgs[*]}"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >/dev/null
    else
        echo "install.sh: Xvfb is missing; the real-window test needs: sudo apt-get install ${pkgs[*]}" >&2
    fi
fi

# The site tests (and `kiosk bench site`) start a throwaway PostgreSQL cluster from
# Debian's server package; a kiosk itself needs no server.
if [[ "${KIOSK_SKIP_SYSTEM_DEPS:-0}" != 1 ]] && ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
    if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null 2>&1; then
        echo "install.sh: installing PostgreSQL for the site tests: postgresql"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql >/dev/null
    else
        echo "install.sh: PostgreSQL is missing; the site tests need: sudo apt-get install postgresql" >&2
    fi
fi

[[ -x "$VENV/bin/python" ]] || "$PY" -m venv "$VENV"
if ! "$VENV/bin/python" -c 'import platform, sys; sys.exit(sys.version_info[:2] != (3, 11) or platform.machine() != "x86_64")'; then
    echo "install.sh: the lock is for CPython 3.11 on x86-64 Linux; $VENV/bin/python is another: pip may find no file with a locked hash" >&2
fi
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check -q)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# the lock's entries for the packages named in $1 (keep=1), or for all the others (keep=0)
select_lock() { awk -v names="$1" -v keep="$2" -f packaging/lock/select.awk "$LOCK"; }

# 1. The build backend first: step 3 builds face_recognition_models (published only as an
#    sdist) and step 5 the project with it, without build isolation.
select_lock setuptools 1 >"$tmp/backend.txt"
"${PIP[@]}" install --require-hashes --no-deps -r "$tmp/backend.txt"

# 2. Uninstall what the lock does not pin (left from an older lock or a hand install), with
#    any pinned package sharing files with it: step 3 puts that one back whole.
if [[ -n "$TORCH_SPEC" ]]; then
    torch_build=$(grep -v '^#' packaging/lock/torch-build.txt | tr '\n' ' ')
    select_lock "$torch_build" 0 >"$tmp/lock.txt"
    keep=$torch_build  # the build KIOSK_TORCH_SPEC installed last time
else
    cp "$LOCK" "$tmp/lock.txt"
    keep=
fi
# shellcheck disable=SC2086
stale=$("$VENV/bin/python" packaging/lock/sync.py "$tmp/lock.txt" $keep)
if [[ -n "$stale" ]]; then
    echo "install.sh: uninstalling what the lock does not pin:" $stale
    # shellcheck disable=SC2086
    "${PIP[@]}" uninstall -y $stale
fi

# 3. The lock.
"${PIP[@]}" install --require-hashes --no-deps --no-build-isolation -r "$tmp/lock.txt"

# 4. Another torch build, resolved by pip (its dependencies beyond the lock too).
if [[ -n "$TORCH_SPEC" ]]; then
    echo "install.sh: KIOSK_TORCH_SPEC: pip install $TORCH_SPEC (not locked)"
    # shellcheck disable=SC2086
    "${PIP[@]}" install $TORCH_SPEC
fi

# 5. The project, editable.
"${PIP[@]}" install --no-deps --no-build-isolation -e .

# Everything the project and the locked packages ask for is there, but the two left out.
if ! problems=$("$VENV/bin/python" -m pip check 2>&1); then
    problems=$(grep -viE '^(insightface .* requires onnxruntime|face[-_]recognition .* requires dlib),' <<<"$problems" || true)
    if [[ -n "$problems" ]]; then
        echo "$problems" >&2
        echo "install.sh: the lock does not satisfy pyproject.toml (or KIOSK_TORCH_SPEC): run make lock" >&2
        exit 1
    fi
fi
"$VENV/bin/python" -m models.runtime
touch "$VENV/.kiosk-installed"
