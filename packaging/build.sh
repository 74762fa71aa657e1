#!/usr/bin/env bash
# Builds the door-side bundle (no torch) into dist/kiosk-door/ and checks that it runs.
#   bash packaging/build.sh [VENV_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${1:-.venv}"
"$VENV/bin/python" -m PyInstaller --noconfirm --log-level WARN \
    --distpath dist --workpath build/pyinstaller packaging/kiosk.spec
dist/kiosk-door/kiosk-door --version
du -sh dist/kiosk-door
