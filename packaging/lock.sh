#!/usr/bin/env bash
# Refreshes the lock that packaging/install.sh installs (`make lock`):
#   packaging/lock/requirements.txt   every package, pinned, with the sha256 of each file
#   packaging/lock/torch-build.txt    the packages in it that only the torch build needs
#
#   bash packaging/lock.sh [uv pip compile options]    e.g. --upgrade, --upgrade-package numpy
#   bash packaging/lock.sh --check                     exit 1 when the lock is not up to date
#
# uv resolves pyproject.toml's dependencies and the extras below, plus
# packaging/lock/requirements.in (the torch build, the build backend), less
# packaging/lock/excludes.txt (onnxruntime, dlib), for CPython 3.11 on x86-64 Linux with
# glibc 2.34 or newer, against PyPI (KIOSK_LOCK_INDEX for another index). Versions already
# in the lock are kept where they still fit. See docs/install/locking.md.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${VENV:-.venv}"
LOCK=packaging/lock/requirements.txt
TORCH_BUILD=packaging/lock/torch-build.txt
EXTRAS=(dev eval face-recognition bench docs postgres)

check=0
if [[ "${1:-}" == --check ]]; then
    check=1
    shift
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# uv: $UV, else the venv's (the lock pins it), else one on the PATH, else the locked
# version installed into a scratch venv
if [[ -z "${UV:-}" ]]; then
    if [[ -x "$VENV/bin/uv" ]]; then
        UV="$VENV/bin/uv"
    elif command -v uv >/dev/null 2>&1; then
        UV=uv
    else
        "${PYTHON:-python3}" -m venv "$tmp/uv"
        awk -v names=uv -v keep=1 -f packaging/lock/select.awk "$LOCK" >"$tmp/uv.txt"
        "$tmp/uv/bin/python" -m pip install -q --disable-pip-version-check --require-hashes \
            --no-deps -r "$tmp/uv.txt"
        UV="$tmp/uv/bin/uv"
    fi
fi

# Only these options decide the result: no uv.toml, no UV_* index settings.
unset UV_INDEX UV_EXTRA_INDEX_URL UV_INDEX_URL UV_DEFAULT_INDEX UV_FIND_LINKS UV_CONSTRAINT \
    UV_OVERRIDE UV_EXCLUDE UV_INDEX_STRATEGY UV_PYTHON_PLATFORM UV_EXCLUDE_NEWER
resolve=(
    pyproject.toml "${EXTRAS[@]/#/--extra=}"
    --excludes packaging/lock/excludes.txt
    --python-version 3.11 --python-platform x86_64-manylinux_2_34
    --no-config --quiet
)
# uv's default index is PyPI; KIOSK_LOCK_INDEX names a mirror of it instead
[[ -z "${KIOSK_LOCK_INDEX:-}" ]] || resolve+=(--default-index "$KIOSK_LOCK_INDEX")

out="$LOCK"
if ((check)); then
    cp "$LOCK" "$tmp/requirements.txt"
    out="$tmp/requirements.txt"
fi
"$UV" pip compile "${resolve[@]}" packaging/lock/requirements.in --generate-hashes \
    --custom-compile-command "make lock" --output-file "$out" "$@"

# The torch build's share: what is no longer needed once torch and torchvision are left out.
printf 'torch\ntorchvision\n' >"$tmp/torch.txt"
"$UV" pip compile "${resolve[@]}" --excludes "$tmp/torch.txt" --constraints "$out" \
    --no-annotate --no-header --output-file "$tmp/without-torch.txt"
names() { grep -oE '^[A-Za-z0-9][A-Za-z0-9._-]*==' "$1" | sed 's/==$//' | sort -u; }
{
    echo "# The packages of requirements.txt that only the torch build needs: install.sh leaves"
    echo "# them out when KIOSK_TORCH_SPEC installs another build. Written by \`make lock\`."
    comm -23 <(names "$out") <(names "$tmp/without-torch.txt")
} >"$tmp/torch-build.txt"

if ((check)); then
    if diff -u "$LOCK" "$out" && diff -u "$TORCH_BUILD" "$tmp/torch-build.txt"; then
        echo "lock.sh: $LOCK is up to date"
        exit 0
    fi
    echo "lock.sh: $LOCK is out of date: run make lock" >&2
    exit 1
fi
cp "$tmp/torch-build.txt" "$TORCH_BUILD"
echo "lock.sh: $(names "$LOCK" | wc -l) packages in $LOCK, $(($(wc -l <"$TORCH_BUILD") - 2)) of them the torch build's"

# Does pip here (pip.conf, PIP_*) find the same files in its local sources? It installs a
# local file only when the lock allows its hash.
PY="$VENV/bin/python"
[[ -x "$PY" ]] || PY="${PYTHON:-python3}"
"$PY" packaging/lock/check_sources.py "$LOCK" | grep -v '^  ok ' ||
    echo "lock.sh: pip here would skip the local files above and download PyPI's" >&2
