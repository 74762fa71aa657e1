#!/usr/bin/env bash
# Builds the door-side bundle (no torch) and checks that it runs.
#   bash packaging/build.sh [VENV_DIR] [DIST_DIR]     (defaults: .venv, dist)
# The bundle lands in DIST_DIR/kiosk-door/; run it as DIST_DIR/kiosk-door/kiosk-door.
# KIOSK_BUNDLE_FULL=1 builds DIST_DIR/kiosk-full/ (with torch, for training) instead.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${1:-.venv}"
DIST="${2:-dist}"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
"$VENV/bin/python" -m PyInstaller --noconfirm --log-level ERROR \
    --distpath "$DIST" --workpath "$WORK" packaging/kiosk.spec
NAME=kiosk-door
[[ "${KIOSK_BUNDLE_FULL:-0}" == 1 ]] && NAME=kiosk-full
"$DIST/$NAME/$NAME" --version
du -sh "$DIST/$NAME"
