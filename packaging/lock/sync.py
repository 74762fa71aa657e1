"""Names the installed distributions that packaging/install.sh must uninstall so that the
venv ends up holding exactly the lock.

    VENV/bin/python packaging/lock/sync.py LOCKED_REQUIREMENTS [KEEP_NAME...]

Prints one name a line: every installed distribution that the given requirements file does
not pin (pip, the project itself and the KEEP names excepted), then every pinned one that
shares a file with one of those. The second kind matters because onnxruntime and
onnxruntime-gpu (or dlib and dlib-bin) install into the same folder: uninstalling the one
deletes the other's files, so install.sh uninstalls both and the lock puts the pinned one
back whole. Standard library only: it runs with the venv's Python before anything else
is installed.
"""

from __future__ import annotations

import re
import sys
from importlib import metadata
from pathlib import Path

ALWAYS_KEPT = {"pip", "clip-face-kiosk"}


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def locked_names(requirements: Path) -> set[str]:
    pins = re.findall(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==", requirements.read_text(), re.M)
    return {canonical(name) for name in pins}


def owned_files(dist: metadata.Distribution) -> set[str]:
    """The files a distribution installed, less its own metadata folder."""
    metadata_dirs = (".dist-info", ".egg-info")
    return {
        str(path)
        for path in dist.files or []
        if not path.parts[0].endswith(metadata_dirs) and "__pycache__" not in path.parts
    }


def to_uninstall(locked: set[str], keep: set[str]) -> list[str]:
    installed = {canonical(d.metadata["Name"]): d for d in metadata.distributions()}
    extra = sorted(set(installed) - locked - keep - ALWAYS_KEPT)
    clashing: list[str] = []
    for name in sorted(set(installed) & locked):
        files = owned_files(installed[name])
        if any(files & owned_files(installed[other]) for other in extra):
            clashing.append(name)
    return extra + clashing


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    keep = {canonical(name) for name in argv[2:]}
    for name in to_uninstall(locked_names(Path(argv[1])), keep):
        print(name)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
