#!/usr/bin/env bash
# Builds the door-side bundle (no torch) and checks that it runs.
#   bash packaging/build.sh [VENV_DIR] [DIST_DIR]     (defaults: .venv, dist)
# The bundle lands in DIST_DIR/kiosk-door/; run it as DIST_DIR/kiosk-door/kiosk-door.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${1:-.venv}"
DIST="${2:-dist}"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
"$VENV/bin/python" -m PyInstaller --noconfirm --log-level ERROR \
    --distpath "$DIST" --workpath "$WORK" packaging/kiosk.spec
"$DIST/kiosk-door/kiosk-door" --version
du -sh "$DIST/kiosk-door"
