"""`kiosk bench abuse`: what survives abuse. Two drills, each rerunnable, each writing JSON.

**Kills.** ``kill -9`` at a random moment of each of the product's writes, each in its
own process: an enrollment (the people store's ``add_person``), an import (`kiosk
people import`), a training from the store (`kiosk train --from-store`, on a tiny CLIP),
an export (`kiosk people export`) and door events (the event log's appends). Each kill
lands at a uniformly random time within the operation's own duration, measured first by
one uninterrupted run. After each kill comes "the next start" (the store, the event log
and the bundle opened as the kiosk opens them), then the checks:

- *inconsistent*: the store's own check fails (``PeopleStore.check``: the database, each
  person's folder and files, nothing left in staging), an event line or a referenced
  thumbnail is damaged, or the bundle does not load;
- *partial*: some but not all of an import's people are enrolled, a person has fewer
  photos than were saved, or an export folder exists but is incomplete;
- *temps left*: any temporary file or folder (``.tmp-*``) anywhere under the drill's
  folders, staging or exports in progress, after the next start.

**Hostile inputs.** Each through the CLI in its own process, with a timeout: names that
are duplicates under case folding or Unicode normalisation, path separators, control and
bidi characters, names too long in bytes, image bombs (PNG and JPEG headers claiming a
gigapixel), empty files, a folder named like a photo, links out of the folder and to
/dev/zero, a pipe named like a photo, thousands of tiny files, a weak PIN, a PIN hash
asking for 1 GiB, a damaged database, `--auto ""`, `--auto` on a full disk. Each must
end within its timeout with a clear message (the expected text, exit status 2 for a
refusal) and no traceback.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

OPS = ("enroll", "import", "train", "export", "events")
ROOT = Path(__file__).resolve().parents[2]
TINY_CLIP = ROOT / "tests" / "data" / "kiosk-tiny-rn.json"
BASE_PEOPLE = ("Base Ada", "Base Bob", "Base Cleo")
IMPORT_PEOPLE = tuple(f"Import {i}" for i in range(10))
IMPORT_PHOTOS = 5
ENROLL_PHOTOS = 8
EVENTS_PER_RUN = 40
READY = "ABUSE-READY"


def _crops(count: int, seed: int, size: int = 224) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 255, (size, size, 3), dtype=np.uint8) for _ in range(count)]


@dataclass(frozen=True)
class Work:
    """The drill's folders, all under one root, and the environment its children run in."""

    root: Path

    @property
    def store(self) -> Path:
        return self.root / "data" / "people"

    @property
    def events(self) -> Path:
        return self.root / "data" / "events"

    @property
    def bundle(self) -> Path:
        return self.root / "data" / "recognizer.bundle"

    @property
    def source(self) -> Path:
        return self.root / "import-me"

    @property
    def export_target(self) -> Path:
        return self.root / "exports" / "people"

    @property
    def config(self) -> Path:
        return self.root / "kiosk.toml"

    def env(self) -> dict[str, str]:
        home = self.root / "home"
        path = os.environ.get("PYTHONPATH", "")
        return {
            **os.environ,
            "PYTHONPATH": str(ROOT) + (os.pathsep + path if path else ""),
            "XDG_DATA_HOME": str(home / "data"),
            "XDG_CACHE_HOME": str(home / "cache"),
            "XDG_CONFIG_HOME": str(home / "config"),
            "KIOSK_CONFIG": str(self.config),
            "QT_QPA_PLATFORM": "offscreen",
            "PYTHONUNBUFFERED": "1",
        }


def prepare(root: Path, clip_model: Path) -> Work:
    """A store of three people, a folder to import (an export of ten more) and a config
    that trains the tiny CLIP for one epoch."""
    from enroll.store import EXPORT_MARKER, Consent, NewPhoto, PeopleStore, encode_png

    work = Work(root)
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    work.config.write_text(
        f'[clip]\nmodel = {json.dumps(str(clip_model))}\npretrained = "none"\n'
        "[train]\nepochs = 1\nmin_images = 1\n"
        f"[recognizer]\nbundle = {json.dumps(str(work.bundle))}\nretrain = false\n"
        f"[enroll]\nstore_dir = {json.dumps(str(work.store))}\n"
        f"[events]\ndir = {json.dumps(str(work.events))}\n",
        encoding="utf-8",
    )
    consent = Consent("abuse-1", datetime.now(UTC))
    with PeopleStore(work.store) as store:
        for index, name in enumerate(BASE_PEOPLE):
            store.add_person(name, [NewPhoto(c) for c in _crops(3, index)], consent)
    work.source.mkdir()
    (work.source / EXPORT_MARKER).write_text("aligned crops\n", encoding="utf-8")
    for index, name in enumerate(IMPORT_PEOPLE):
        (work.source / name).mkdir()
        for number, crop in enumerate(_crops(IMPORT_PHOTOS, 100 + index)):
            (work.source / name / f"{number}.png").write_bytes(encode_png(crop))
    return work


# -- the children: one operation each, killed at a random moment ----------------------


def child(op: str, work_root: str, trial: str) -> int:
    """Run an enrollment or event writes in this process (``python -m kiosk.bench.abuse
    OP ROOT TRIAL``), saying when its setup is done so that the kill falls inside the
    operation itself."""
    work = Work(Path(work_root))
    if op == "enroll":
        from enroll.store import Consent, NewPhoto, PeopleStore

        photos = [NewPhoto(c, "front", c[:120, :160]) for c in _crops(ENROLL_PHOTOS, 7)]
        with PeopleStore(work.store) as store:
            print(READY, flush=True)
            store.add_person(f"Killed {trial}", photos, Consent("abuse-1", datetime.now(UTC)))
        return 0
    if op == "events":
        from kiosk.live.events import EventLog

        thumbnail = _crops(1, 3, size=112)[0]
        log = EventLog(work.events)
        print(READY, flush=True)
        for index in range(EVENTS_PER_RUN):
            person = f"Person {index % 3}"  # a folder gallery's: logged by a name digest
            log.append(person, person, 0.9, index, thumbnail)
        return 0
    raise ValueError(f"{op} runs through the CLI (CLI_CHILD), not child()")


# The CLI operations run as a program of their own (the command line a user types, with
# the imports done before the kill window): sys.argv[1] is the operation, the rest argv.
CLI_CHILD = f"""
import sys
from kiosk.cli import main
if sys.argv[1] == "train":
    import open_clip, torch
print({READY!r}, flush=True)
sys.exit(main(sys.argv[2:]))
"""


def _command(work: Work, op: str, trial: str) -> list[str]:
    if op in ("enroll", "events"):
        return [sys.executable, "-m", "kiosk.bench.abuse", op, str(work.root), trial]
    argv = {
        "import": ["people", "import", str(work.source), "--consent-obtained"],
        "export": ["people", "export", str(work.export_target)],
        "train": ["train", "--from-store"],
    }[op]
    return [sys.executable, "-c", CLI_CHILD, op, "--config", str(work.config), *argv]


def _start(work: Work, op: str, trial: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        _command(work, op, trial),
        cwd=work.root,
        env=work.env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_ready(process: subprocess.Popen[str], timeout_s: float = 180.0) -> None:
    assert process.stdout is not None
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if line.strip() == READY:
            return
        if not line and process.poll() is not None:
            _, err = process.communicate()
            raise RuntimeError(f"the drill's child ended before its work: {err[-2000:]}")
    process.kill()
    raise RuntimeError("the drill's child never got ready")


def run_uninterrupted(work: Work, op: str, trial: str) -> float:
    """One run to its end; seconds from ready to exit (the window kills are drawn from)."""
    process = _start(work, op, trial)
    _wait_ready(process)
    started = time.monotonic()
    _, err = process.communicate(timeout=600)
    if process.returncode != 0:
        raise RuntimeError(f"{op} failed without a kill (exit {process.returncode}): {err}")
    return time.monotonic() - started


def kill_once(work: Work, op: str, trial: str, delay_s: float) -> bool:
    """Start ``op``, kill -9 it ``delay_s`` after it is ready; whether the kill landed
    (False: it had finished first)."""
    process = _start(work, op, trial)
    _wait_ready(process)
    time.sleep(delay_s)
    landed = process.poll() is None
    if landed:
        os.kill(process.pid, signal.SIGKILL)
    process.communicate(timeout=60)
    return landed and process.returncode == -signal.SIGKILL


# -- the checks --------------------------------------------------------------------------


def next_start(work: Work) -> None:
    """What the kiosk and the commands do when they start: open the people store (its
    recovery), the event log and the bundle."""
    from enroll.store import PeopleStore
    from kiosk.build import current_bundle
    from kiosk.live.events import EventLog

    PeopleStore(work.store).close()
    EventLog(work.events)
    current_bundle(work.bundle)


def temps_left(work: Work) -> list[str]:
    """Every temporary file or folder under the drill's folders, and anything left in
    the store's staging or exports folders."""
    found = [
        str(path.relative_to(work.root))
        for path in work.root.rglob(".tmp-*")
        if "home" not in path.relative_to(work.root).parts[:1]
    ]
    for folder in (work.store / "staging", work.store / "exports"):
        if folder.is_dir():
            found += [str(p.relative_to(work.root)) for p in folder.iterdir()]
    return found


def _events_problems(work: Work) -> list[str]:
    log_file = work.events / "events.jsonl"
    if not log_file.exists():
        return []
    problems = []
    for number, line in enumerate(log_file.read_text(encoding="utf-8").splitlines(), 1):
        try:
            event = json.loads(line)
        except json.JSONDecodeError:
            problems.append(f"events.jsonl line {number} is damaged")
            continue
        if not (work.events / event["thumbnail"]).is_file():
            problems.append(f"events.jsonl line {number}: its thumbnail is missing")
    return problems


def orphan_thumbnails(work: Work) -> int:
    """Thumbnails no event line names (written, then the kill came before the line)."""
    log_file = work.events / "events.jsonl"
    named = set()
    if log_file.exists():
        for line in log_file.read_text(encoding="utf-8").splitlines():
            with contextlib.suppress(json.JSONDecodeError, KeyError):
                named.add(json.loads(line)["thumbnail"])
    folder = work.events / "thumbnails"
    on_disk = {f"thumbnails/{p.name}" for p in folder.iterdir()} if folder.is_dir() else set()
    return len(on_disk - named)


def inspect(work: Work, op: str, trial: str) -> dict[str, list[str]]:
    """What is wrong after the next start: inconsistent and partial, each with details."""
    from enroll.store import PeopleStore
    from models.clip.bundle import BundleError, load_bundle

    inconsistent: list[str] = []
    partial: list[str] = []
    with PeopleStore(work.store) as store:
        inconsistent += store.check()
        people = {p.name: p.photo_count for p in store.people()}
    missing_base = [b for b in BASE_PEOPLE if not any(n.startswith(b) for n in people)]
    inconsistent += [f"{name} is gone" for name in missing_base]
    enrolled = people.get(f"Killed {trial}")
    if op == "enroll" and enrolled is not None and enrolled != ENROLL_PHOTOS:
        partial.append(f"Killed {trial} has {enrolled} photos")
    imported = [name for name in IMPORT_PEOPLE if name in people]
    if imported and len(imported) != len(IMPORT_PEOPLE):
        partial.append(f"{len(imported)} of {len(IMPORT_PEOPLE)} people imported")
    inconsistent += _events_problems(work)
    if work.bundle.exists():
        try:
            load_bundle(work.bundle)
        except BundleError as error:
            inconsistent.append(f"the bundle does not load: {error}")
    target = work.export_target
    if target.exists():
        from enroll.store import EXPORT_MARKER

        if not (target / EXPORT_MARKER).is_file():
            partial.append("the export has no marker")
        for name, count in people.items():
            folder = target / name
            if not folder.is_dir() or len(list(folder.iterdir())) != count:
                partial.append(f"the export of {name} is incomplete")
    return {"inconsistent": inconsistent, "partial": partial}


def reset(work: Work, op: str, trial: int) -> None:
    """Back to the base store for the next trial (and a changed store before a training,
    so that it has something to learn)."""
    from enroll.store import PeopleStore

    with PeopleStore(work.store) as store:
        for person in store.people():
            if not person.name.startswith(BASE_PEOPLE):
                store.delete(person.name, reason="abuse drill reset")
        if op == "train":  # a new store state: the next training has work to do
            ada = next(p.name for p in store.people() if p.name.startswith("Base Ada"))
            store.rename(ada, f"Base Ada {trial}")
    if work.export_target.exists():
        shutil.rmtree(work.export_target)


@dataclass
class OpFigures:
    uninterrupted_s: float = 0.0
    trials: int = 0
    killed: int = 0  # the kill landed while the operation ran
    finished_first: int = 0
    inconsistent: int = 0
    partial: int = 0
    temps_left: int = 0
    problems: list[str] = field(default_factory=list)


def run_kills(
    work: Work,
    kills: int = 100,
    *,
    ops: tuple[str, ...] = OPS,
    seed: int = 0,
    log: Callable[[str], None] = lambda message: None,
) -> dict[str, Any]:
    """``kills`` kill -9s spread evenly over ``ops`` (see the module's text)."""
    rng = random.Random(seed)
    figures = {op: OpFigures() for op in ops}
    for op in ops:  # the shorter of two runs: the first also warms the caches
        times = []
        for run in range(2):
            reset(work, op, run)
            times.append(run_uninterrupted(work, op, f"calibration {run}"))
        figures[op].uninterrupted_s = round(min(times), 3)
        log(f"{op}: {figures[op].uninterrupted_s:.2f} s uninterrupted")
    for number in range(kills):
        op = ops[number % len(ops)]
        entry = figures[op]
        reset(work, op, number + 1)
        delay = rng.uniform(0.0, entry.uninterrupted_s)
        landed = kill_once(work, op, str(number), delay)
        next_start(work)
        found = inspect(work, op, str(number))
        left = temps_left(work)
        entry.trials += 1
        entry.killed += landed
        entry.finished_first += not landed
        entry.inconsistent += bool(found["inconsistent"])
        entry.partial += bool(found["partial"])
        entry.temps_left += bool(left)
        for problem in found["inconsistent"] + found["partial"] + left:
            entry.problems.append(f"kill {number} at {delay:.3f} s: {problem}")
        log(
            f"kill {number + 1}/{kills} {op} at {delay:.3f} s: "
            + ("landed" if landed else "finished first")
            + (
                ""
                if not (found["inconsistent"] or found["partial"] or left)
                else f" PROBLEMS {found} {left}"
            )
        )
    rows = {op: asdict(entry) for op, entry in figures.items()}
    return {
        "kills": kills,
        "landed": sum(f.killed for f in figures.values()),
        "inconsistent": sum(f.inconsistent for f in figures.values()),
        "partial": sum(f.partial for f in figures.values()),
        "temps_left": sum(f.temps_left for f in figures.values()),
        # Door thumbnails no event line names (the kill fell between the two writes):
        # whole files, not temporary ones, and not counted as inconsistent.
        "orphan_thumbnails": orphan_thumbnails(work),
        "by_operation": rows,
    }


# -- hostile inputs ----------------------------------------------------------------------

FULL_DISK = """
import errno, sys
import enroll.store as store
def full(path, data):
    raise OSError(errno.ENOSPC, "No space left on device")
store._write_file = full
from kiosk.cli import main
sys.exit(main(sys.argv[1:]))
"""


@dataclass(frozen=True)
class Case:
    name: str
    argv: tuple[str, ...]
    expect: str  # text the output must contain (the clear message)
    rc: int = 2
    setup: Callable[[Path], None] | None = None
    stdin: str | None = None
    wrapper: str | None = None  # python code run instead of `-m kiosk` (sys.argv[1:] = argv)
    timeout_s: float = 60.0
    needs: str | None = None  # "models" or "video": skipped without the shared data


def png_bomb(width: int, height: int) -> bytes:
    """A PNG that claims ``width`` x ``height`` pixels in a few bytes (tests use it too)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\0\0"))
        + chunk(b"IEND", b"")
    )


def _jpeg_bomb(width: int, height: int) -> bytes:
    """A JPEG's start, a frame header claiming ``width`` x ``height``, then nothing."""
    import struct

    frame = struct.pack(">BHHB", 8, height, width, 3) + b"\x01\x11\x00\x02\x11\x00\x03\x11\x00"
    return b"\xff\xd8" + b"\xff\xc0" + struct.pack(">H", len(frame) + 2) + frame + b"\xff\xd9"


def _crop_png(seed: int) -> bytes:
    from enroll.store import encode_png

    return encode_png(_crops(1, seed)[0])


def _folder(root: Path, people: dict[str, list[tuple[str, bytes]]]) -> None:
    """An import folder of aligned crops (an export) with these files per person."""
    from enroll.store import EXPORT_MARKER

    folder = root / "in"
    folder.mkdir(exist_ok=True)
    (folder / EXPORT_MARKER).write_text("aligned crops\n", encoding="utf-8")
    for name, files in people.items():
        (folder / name).mkdir()
        for file, data in files:
            (folder / name / file).write_bytes(data)


def _good(seed: int = 0) -> list[tuple[str, bytes]]:
    return [("0.png", _crop_png(seed)), ("1.png", _crop_png(seed + 1))]


def _store_with(root: Path, *names: str) -> None:
    from enroll.store import Consent, NewPhoto, PeopleStore

    with PeopleStore(root / "store") as store:
        for index, name in enumerate(names):
            store.add_person(
                name, [NewPhoto(c) for c in _crops(2, index)], Consent("h", datetime.now(UTC))
            )


def _enrolled_and_in_folder(root: Path) -> None:
    _store_with(root, "Ada")
    _folder(root, {"Ada": _good()})


def _damaged_db(root: Path) -> None:
    (root / "store").mkdir()
    (root / "store" / "people.db").write_bytes(b"garbage" * 100)


def _long_name_in_store(root: Path) -> None:
    """A 400-byte name stored by an older version (before the byte limit)."""
    _store_with(root, "Ada")
    with contextlib.closing(sqlite3.connect(root / "store" / "people.db")) as db, db:
        db.execute(
            "UPDATE people SET name = ?, name_key = ? WHERE name = 'Ada'", ("😀" * 100, "😀" * 100)
        )


def _special_files(root: Path) -> None:
    _folder(root, {"Ada": _good()})
    person = root / "in" / "Ada"
    (person / "dir.png").mkdir()
    (person / "empty.png").write_bytes(b"")
    (person / "zero.png").symlink_to("/dev/zero")
    outside = root / "secret.png"
    outside.write_bytes(_crop_png(9))
    (person / "outside.png").symlink_to(outside)
    os.mkfifo(person / "pipe.png")


def _many_tiny(root: Path) -> None:
    _folder(root, {"Ada": _good()})
    for index in range(5000):
        (root / "in" / "Ada" / f"t{index:05d}.png").write_bytes(b"x")


def _pin_hash(n: int) -> str:
    import base64

    salt = base64.urlsafe_b64encode(b"0123456789abcdef").decode().rstrip("=")
    return f"scrypt${n}$8$1${salt}${salt}{salt}"


def _config(root: Path, text: str) -> None:
    (root / "kiosk.toml").write_text(text, encoding="utf-8")


def hostile_cases() -> list[Case]:
    """The hostile inputs; ``{root}`` in an argument is the case's own folder."""
    store = ("people", "--store", "{root}/store")
    do_import = (*store, "import", "{root}/in", "--consent-obtained")
    return [
        Case(
            "duplicate names by case",
            do_import,
            "same person as 'Bill Gates'",
            setup=lambda r: _folder(r, {"Bill Gates": _good(), "bill gates": _good(2)}),
        ),
        Case(
            "duplicate names NFC and NFD",
            do_import,
            "same person as 'Zoë'",
            setup=lambda r: _folder(r, {"Zo\u00eb": _good(), "Zoe\u0308": _good(2)}),
        ),
        Case(
            "name with a right-to-left override",
            do_import,
            "right-to-left override",
            setup=lambda r: _folder(r, {"Ada": _good(), "evil\u202egnp.exe": _good(2)}),
        ),
        Case(
            "name with a control character",
            do_import,
            "control",
            setup=lambda r: _folder(r, {"bad\x01name": _good()}),
        ),
        Case(
            "name with '..' (path traversal)",
            do_import,
            "contains '..'",
            setup=lambda r: _folder(r, {"..hidden": _good(), "a..b": _good(2)}),
        ),
        Case(
            "200-byte name (50 emoji) in an import",
            do_import,
            "200 bytes",
            setup=lambda r: _folder(r, {"😀" * 50: _good()}),
        ),
        Case(
            "rename to a 300-byte name",
            (*store, "rename", "Ada", "é" * 150),
            "the limit is 100",
            setup=lambda r: _store_with(r, "Ada"),
        ),
        Case(
            "rename to a 300-byte name within 100 characters",
            (*store, "rename", "Ada", "😀" * 75),
            "300 bytes",
            setup=lambda r: _store_with(r, "Ada"),
        ),
        Case(
            "rename through a path separator",
            (*store, "rename", "Ada", "../../etc/passwd"),
            "path separator",
            setup=lambda r: _store_with(r, "Ada"),
        ),
        Case(
            "import of people already enrolled",
            do_import,
            "already enrolled",
            setup=_enrolled_and_in_folder,
        ),
        Case(
            "PNG bomb (30000 x 30000) among good photos",
            do_import,
            "bomb.png: the file is too large (900.0 megapixels)",
            rc=0,
            setup=lambda r: _folder(r, {"Ada": [*_good(), ("bomb.png", png_bomb(30000, 30000))]}),
        ),
        Case(
            "JPEG bomb (65000 x 65000 header)",
            do_import,
            "bomb.jpg: the file is too large (4225.0 megapixels)",
            rc=0,
            setup=lambda r: _folder(r, {"Ada": [*_good(), ("bomb.jpg", _jpeg_bomb(65000, 65000))]}),
        ),
        Case(
            "only bombs: nobody to import",
            do_import,
            "no usable photo",
            rc=0,
            setup=lambda r: _folder(
                r, {"Ada": _good(), "Bob": [("b.png", png_bomb(30000, 30000))]}
            ),
        ),
        Case(
            "empty file, folder named like a photo, links to /dev/zero and out, a pipe",
            do_import,
            "not a regular file",
            rc=0,
            setup=_special_files,
            timeout_s=30.0,
        ),
        Case(
            "5000 tiny files in one person's folder",
            do_import,
            "over the 200 photos kept per person",
            rc=0,
            setup=_many_tiny,
            timeout_s=90.0,
        ),
        Case(
            "import of a file, not a folder",
            (*store, "import", "{root}/kiosk.toml", "--consent-obtained"),
            "is not a folder",
            setup=lambda r: _config(r, ""),
        ),
        Case(
            "export of a 400-byte name stored by an older version",
            (*store, "export", "{root}/out"),
            "rename these people first",
            setup=_long_name_in_store,
        ),
        Case(
            "export into a folder that is not empty",
            (*store, "export", "{root}"),
            "is not empty",
            setup=lambda r: _store_with(r, "Ada"),
        ),
        Case(
            "a damaged people database",
            (*store, "list"),
            "cannot be opened",
            setup=_damaged_db,
        ),
        Case(
            "a weak PIN (1234)",
            ("pin", "--stdin"),
            "6 to 64 characters",
            stdin="1234\n",
        ),
        Case(
            "a weak PIN (123456)",
            ("pin", "--stdin"),
            "must not be a run",
            stdin="123456\n",
        ),
        Case(
            "a PIN hash asking scrypt for 1 GiB",
            ("--config", "{root}/kiosk.toml", "people", "list"),
            "kiosk pin",
            setup=lambda r: _config(r, f'[ui]\noperator_pin = "{_pin_hash(2**20)}"\n'),
        ),
        Case(
            "a NUL byte in a configured path",
            ("--config", "{root}/kiosk.toml", "people", "list"),
            "NUL",
            setup=lambda r: _config(r, '[enroll]\nstore_dir = "a\\u0000b"\n'),
        ),
        Case(
            "enroll --auto with an empty name",
            ("enroll", "--source", "{video}", "--store", "{root}/store", "--auto", ""),
            "the name is empty",
            needs="video",
        ),
        Case(
            "enroll --auto on a full disk",
            (
                "--config",
                "{root}/kiosk.toml",
                "enroll",
                "--source",
                "{video}",
                "--store",
                "{root}/store",
                "--auto",
                "Ada",
            ),
            "the disk is full",
            setup=lambda r: _config(r, '[recognizer]\nkind = "embedding_gallery"\n'),
            wrapper=FULL_DISK,
            timeout_s=180.0,
            needs="video",
        ),
    ]


@dataclass
class CaseResult:
    name: str
    status: str  # "clear", "traceback", "hang", "unclear" (wrong status or message), "skipped"
    rc: int | None
    seconds: float
    message: str  # the last line of stderr (what the user read)


def run_case(case: Case, root: Path, *, video: Path | None, models: bool) -> CaseResult:
    if (case.needs == "video" and video is None) or (case.needs == "models" and not models):
        return CaseResult(case.name, "skipped", None, 0.0, f"needs the shared {case.needs}")
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    if case.setup is not None:
        case.setup(root)
    argv = [a.replace("{root}", str(root)).replace("{video}", str(video)) for a in case.argv]
    command = (
        [sys.executable, "-c", case.wrapper, *argv]
        if case.wrapper
        else [sys.executable, "-m", "kiosk", *argv]
    )
    env = Work(root).env()
    env.pop("KIOSK_CONFIG")
    started = time.monotonic()
    try:
        done = subprocess.run(
            command,
            cwd=root,
            env=env,
            input=case.stdin or "",
            capture_output=True,
            text=True,
            timeout=case.timeout_s,
            check=False,
        )
    except subprocess.TimeoutExpired as expired:
        err = expired.stderr.decode() if isinstance(expired.stderr, bytes) else expired.stderr or ""
        return CaseResult(case.name, "hang", None, case.timeout_s, err.strip()[-300:])
    seconds = round(time.monotonic() - started, 2)
    err = done.stderr
    lines = [line for line in err.splitlines() if line.strip() and "propagateSizeHints" not in line]
    message = lines[-1] if lines else done.stdout.strip()[-300:]
    if "Traceback" in err:
        status = "traceback"
    elif done.returncode != case.rc or case.expect not in err + done.stdout:
        status = "unclear"
    else:
        status = "clear"
    return CaseResult(case.name, status, done.returncode, seconds, message[:400])


def run_hostile(
    root: Path,
    *,
    video: Path | None,
    models: bool,
    only: Callable[[Case], bool] = lambda case: True,
    log: Callable[[str], None] = lambda message: None,
) -> dict[str, Any]:
    results = []
    for index, case in enumerate(c for c in hostile_cases() if only(c)):
        result = run_case(case, root / f"case-{index:02d}", video=video, models=models)
        log(f"{result.status:<9} {result.seconds:6.2f} s  {case.name}: {result.message}")
        results.append(result)
    count = {
        s: sum(r.status == s for r in results)
        for s in ("clear", "traceback", "hang", "unclear", "skipped")
    }
    return {"cases": len(results), **count, "rows": [asdict(r) for r in results]}


if __name__ == "__main__":
    raise SystemExit(child(*sys.argv[1:4]))
