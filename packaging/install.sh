#!/usr/bin/env bash
# Installs the kiosk into a virtual environment, deterministically.
#
#   bash packaging/install.sh [VENV_DIR]     (default: .venv)
#
# Why a script and not a bare `pip install .`:
#  * insightface depends on the CPU-only `onnxruntime`, which shares its package
#    folder with `onnxruntime-gpu`; whichever installs last wins. We remove the
#    CPU package and reinstall the GPU build last, so the result never depends on
#    install order. (The GPU build runs on the CPU too when no CUDA is present.)
#  * The real-window test needs an X server (Xvfb) and the xcb libraries Qt loads.
#  * The site tests need PostgreSQL's server programs (Debian's postgresql package).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${1:-.venv}"
TORCH_SPEC="${KIOSK_TORCH_SPEC:-torch==2.14.1 torchvision==0.29.1}"
PY="${PYTHON:-python3}"

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
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check -q)
# shellcheck disable=SC2086
"${PIP[@]}" install $TORCH_SPEC
"${PIP[@]}" install -e ".[dev,eval,face-recognition]"
ORT_GPU_VERSION=$("$VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("onnxruntime-gpu"))')
"${PIP[@]}" uninstall -y onnxruntime onnxruntime-gpu
"${PIP[@]}" install --no-deps --force-reinstall "onnxruntime-gpu==$ORT_GPU_VERSION"
"$VENV/bin/python" -m models.runtime
touch "$VENV/.kiosk-installed"
