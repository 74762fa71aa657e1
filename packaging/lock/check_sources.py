"""Checks the lock's hashes against the local package sources pip is configured with here.

    python packaging/lock/check_sources.py packaging/lock/requirements.txt

The lock is resolved against PyPI and records PyPI's sha256 of every file of each pinned
version. pip, though, reads its own configuration (pip.conf, PIP_* variables) and may take
a pinned file from a local source instead: a find-links folder or a file:// index (a
mirror). With --require-hashes it installs such a file only when its sha256 is in the
lock. For every file in those local sources whose project and version the lock pins, this
reads the file, hashes it and says whether the lock allows it. Exit status 1 when one is
not allowed: pip would skip it and download the index's file (or fail offline), which also
means the local file is not the one PyPI serves. Standard library only.
"""

from __future__ import annotations

import ast
import hashlib
import re
import subprocess
import sys
from pathlib import Path
from urllib.parse import unquote, urljoin, urlparse
from urllib.request import url2pathname

HREF = re.compile(r'href="([^"]+)"', re.I)


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def read_lock(path: Path) -> dict[str, tuple[str, set[str]]]:
    """{project: (version, sha256 hashes)}"""
    pins = {}
    for entry in re.split(r"\n(?=\S)", path.read_text()):
        pin = re.match(r"([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)", entry)
        if pin:
            hashes = set(re.findall(r"--hash=sha256:([0-9a-f]{64})", entry))
            pins[canonical(pin[1])] = (pin[2], hashes)
    return pins


def pip_options(python: str) -> dict[str, list[str]]:
    """index-url, extra-index-url and find-links as pip sees them (files and environment)."""
    listed = subprocess.run(
        [python, "-m", "pip", "config", "list"], capture_output=True, text=True, check=True
    ).stdout
    options: dict[str, list[str]] = {}
    for line in listed.splitlines():
        key, _, value = line.partition("=")
        option = key.rsplit(".", 1)[-1]
        if option in ("index-url", "extra-index-url", "find-links"):
            values = ast.literal_eval(value).split()
            options.setdefault(option, [])
            options[option] += [v for v in values if v not in options[option]]
    return options


def local_path(url: str) -> Path | None:
    parsed = urlparse(url)
    if parsed.scheme == "file":
        return Path(url2pathname(unquote(parsed.path)))
    if not parsed.scheme:
        return Path(url)
    return None


def name_version(filename: str) -> tuple[str, str] | None:
    if filename.endswith(".whl"):
        parts = filename[: -len(".whl")].split("-")
        return (canonical(parts[0]), parts[1].replace("_", "-")) if len(parts) >= 5 else None
    for suffix in (".tar.gz", ".zip", ".tar.bz2"):
        if filename.endswith(suffix):
            name, _, version = filename[: -len(suffix)].rpartition("-")
            return (canonical(name), version) if name else None
    return None


def local_files(options: dict[str, list[str]], projects: set[str]) -> list[tuple[str, Path]]:
    """(source, file) for every file of the given projects in pip's local sources."""
    found = []
    for link in options.get("find-links", []):
        folder = local_path(link)
        if folder and folder.is_dir():
            found += [(str(folder), f) for f in sorted(folder.iterdir()) if f.is_file()]
    for index in options.get("index-url", []) + options.get("extra-index-url", []):
        root = local_path(index)
        if root is None or not root.is_dir():
            continue
        for project in sorted(projects):
            page = root / project / "index.html"
            if not page.is_file():
                continue
            base = page.as_uri()
            for href in HREF.findall(page.read_text()):
                target = local_path(urljoin(base, href).split("#", 1)[0])
                if target and target.is_file():
                    found.append((index, target))
    return found


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        while chunk := stream.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    pins = read_lock(Path(argv[1]))
    options = pip_options(sys.executable)
    checked = allowed = 0
    local_projects = set()
    for source, path in local_files(options, set(pins)):
        parsed = name_version(path.name)
        if parsed is None or parsed[0] not in pins or pins[parsed[0]][0] != parsed[1]:
            continue
        checked += 1
        ok = sha256(path) in pins[parsed[0]][1]
        allowed += ok
        local_projects.add(parsed[0])
        print(f"  {'ok ' if ok else 'NOT IN THE LOCK'}  {path.name}  ({source})")
    print(
        f"check_sources: {allowed} of {checked} local files of locked versions have a hash the"
        f" lock allows; {len(pins) - len(local_projects)} of {len(pins)} locked projects have"
        " no local file and come from the index"
    )
    return 0 if allowed == checked else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
