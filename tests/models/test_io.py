"""models.io: atomic writes, the one image reader and its limits, the folder scanner."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from models.errors import UserError
from models.io import (
    NESTED_FOLDER,
    NOT_AN_IMAGE,
    TEMP_PREFIX,
    ImageRefused,
    atomic_path,
    atomic_writer,
    decode_image,
    read_image,
    remove_stale_temps,
    scan_people,
    scratch_path,
    split_images,
    write_bytes_atomic,
    write_json_atomic,
)
from tests.helpers import ROOT, png_header_only, stale_temp


def test_atomic_write_replaces_whole_files_and_leaves_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "report.json"
    write_json_atomic(target, {"name": "Zoë"})
    assert target.read_text(encoding="utf-8") == '{\n  "name": "Zoë"\n}\n'
    write_bytes_atomic(target, b"second")
    assert target.read_bytes() == b"second"
    for error in (OSError("disk full"), KeyboardInterrupt()):
        with pytest.raises(type(error)), atomic_writer(target) as stream:
            stream.write(b"half of a thi")
            raise error
        assert target.read_bytes() == b"second"  # the old content survives
    assert sorted(p.name for p in target.parent.iterdir()) == ["report.json"]


def test_atomic_path_hands_out_a_name_and_removes_it_on_error(tmp_path: Path) -> None:
    target = tmp_path / "tower.onnx"
    with atomic_path(target) as tmp:
        assert tmp.parent == tmp_path and tmp.name.startswith(TEMP_PREFIX)
        assert tmp.suffix == ".onnx" and tmp.exists()  # made by mkstemp: nobody else has it
        tmp.write_bytes(b"first")  # as torch.onnx.export or a download writes a named file
    assert target.read_bytes() == b"first"
    assert target.stat().st_mode & 0o777 == 0o600  # private unless asked otherwise
    with atomic_path(target, permissions=0o644) as tmp:
        tmp.write_bytes(b"second")
    assert target.read_bytes() == b"second" and target.stat().st_mode & 0o777 == 0o644
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("the exporter failed")
    assert target.read_bytes() == b"second"
    assert [p.name for p in tmp_path.iterdir()] == ["tower.onnx"]


def test_scratch_path_is_removed_whatever_happens(tmp_path: Path) -> None:
    with scratch_path(tmp_path / "new", ".zip") as scratch:
        scratch.write_bytes(b"an archive")
    assert not scratch.exists()
    with pytest.raises(KeyboardInterrupt), scratch_path(tmp_path) as scratch:
        raise KeyboardInterrupt
    assert not scratch.exists()
    with scratch_path(tmp_path) as scratch:
        scratch.rename(tmp_path / "kept")  # renamed away by the block: fine too
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kept", "new"]


def test_a_killed_write_leaves_a_temp_that_the_next_open_removes(tmp_path: Path) -> None:
    """kill -9 runs no cleanup: the temporary file stays until remove_stale_temps, which
    removes it at once (its writer is gone), but never a live writer's, however old."""
    script = textwrap.dedent(
        """
        import os, signal, sys, time
        from pathlib import Path
        from models.io import atomic_writer
        with atomic_writer(Path(sys.argv[1])) as stream:
            stream.write(b"half of a bund")
            stream.flush()
            if sys.argv[2] == "kill":
                os.kill(os.getpid(), signal.SIGKILL)
            print("WRITING", flush=True)
            time.sleep(60)
        """
    )
    target = tmp_path / "people.bundle"
    run = subprocess.run([sys.executable, "-c", script, str(target), "kill"], cwd=ROOT, check=False)
    assert run.returncode == -9
    (left,) = tmp_path.iterdir()
    assert left.name.startswith(TEMP_PREFIX) and left.suffix == ".bundle"
    assert not target.exists()
    assert remove_stale_temps(tmp_path) == [left]  # its writer is dead: removed at once
    assert list(tmp_path.iterdir()) == []
    live = subprocess.Popen(
        [sys.executable, "-c", script, str(target), "live"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert live.stdout is not None and live.stdout.readline().strip() == "WRITING"
        (writing,) = tmp_path.iterdir()
        assert writing.name.startswith(f"{TEMP_PREFIX}{live.pid}-")
        os.utime(writing, (0, 0))  # old, but its writer is alive and holds its lock
        assert remove_stale_temps(tmp_path) == [] and writing.exists()
    finally:
        live.kill()
        live.wait()
    assert remove_stale_temps(tmp_path) == [writing]


def test_stale_temp_cleanup_matches_only_our_names(tmp_path: Path) -> None:
    ours = [stale_temp(tmp_path, name) for name in (".tmp-abcdefgh", ".tmp-a1b2_c3d.npz")]
    others = [
        stale_temp(tmp_path, name)
        for name in (
            "report.json",
            ".tmp-notes.txt",  # not mkstemp's eight characters
            ".tmp-ABCDEFGH.jpg",
            ".tmp-abc",
            "x.tmp-abcdefgh",
            ".people.bundle.abcdefgh.tmp",
        )
    ]
    fresh = stale_temp(tmp_path, ".tmp-inflight.jpg", age_s=60)  # being written right now
    (tmp_path / ".tmp-folder12").mkdir()  # a folder of that name is not ours either
    os.symlink(ours[0], tmp_path / ".tmp-symlink1")
    removed = remove_stale_temps(tmp_path)
    assert sorted(removed) == sorted(ours)
    assert all(p.exists() for p in [*others, fresh, tmp_path / ".tmp-folder12"])
    assert (tmp_path / ".tmp-symlink1").is_symlink()
    assert remove_stale_temps(tmp_path / "missing") == []


def test_unwritable_json_is_a_user_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(UserError, match="cannot write"):
        write_json_atomic(blocker / "report.json", {})


def test_reader_decodes_real_formats_as_bgr(tmp_path: Path) -> None:
    import cv2

    image = np.zeros((20, 30, 3), np.uint8)
    image[..., 2] = 255  # red in BGR
    for suffix in (".png", ".jpg", ".bmp", ".webp"):
        path = tmp_path / f"red{suffix}"
        assert cv2.imwrite(str(path), image)
        read = read_image(path)
        assert read.shape == (20, 30, 3) and read.dtype == np.uint8
        assert read[..., 2].mean() > 240 and read[..., 0].mean() < 15
    grey = tmp_path / "grey.pgm"
    cv2.imwrite(str(grey), np.full((12, 8), 99, np.uint8))
    assert read_image(grey).shape == (12, 8, 3)  # grey photos come as three channels


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "is empty"),
        (b"GIF89a not really", "not an image, or is corrupt"),
        (b"plain text", "not an image, or is corrupt"),
        (png_header_only(10_000, 9_000), r"10000 x 9000 pixels \(90\.0 megapixels\)"),
        (png_header_only(30_000, 30_000), r"too large \(900\.0 megapixels\)"),
    ],
    ids=["empty", "fake-gif", "text", "90-megapixels", "900-megapixels"],
)
def test_reader_refuses_with_a_message_before_decoding(data: bytes, message: str) -> None:
    import resource

    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(ImageRefused, match=message):
        decode_image(data, "upload.png")
    # a 900-megapixel decode would take 2.7 GB; the header check costs nothing
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 100 * 1024


def test_reader_refuses_big_and_missing_files(tmp_path: Path) -> None:
    big = tmp_path / "big.jpg"
    big.write_bytes(b"\xff" * 2048)
    with pytest.raises(ImageRefused, match=r"big\.jpg is 2\.0 kB; images over 1\.0 kB"):
        read_image(big, max_bytes=1024)
    with pytest.raises(ImageRefused, match="cannot be read"):
        read_image(tmp_path / "missing.png")
    truncated = tmp_path / "cut.png"
    import cv2

    cv2.imwrite(str(truncated), np.zeros((64, 64, 3), np.uint8))
    truncated.write_bytes(truncated.read_bytes()[:60])
    with pytest.raises(ImageRefused, match="corrupt"):
        read_image(truncated)


def test_scanner_keeps_unicode_names_and_skips_unsafe_and_duplicates(tmp_path: Path) -> None:
    for folder in ("Zoë", "zoë", "Ana", "_unknown", ".hidden", "a..b"):
        (tmp_path / folder).mkdir()
    (tmp_path / "Ana" / "1.jpg").write_bytes(b"x")
    (tmp_path / "Ana" / ".DS_Store").write_bytes(b"x")
    (tmp_path / "loose.jpg").write_bytes(b"x")
    people, skipped = scan_people(tmp_path)
    assert set(people) == {"Ana", "Zoë"} or set(people) == {"Ana", "zoë"}
    assert [p.name for p in people["Ana"]] == ["1.jpg"]
    reasons = sorted(item.reason.split(":")[0] for item in skipped)
    assert reasons == ["duplicate name", "unsafe name"]
    with pytest.raises(FileNotFoundError):
        scan_people(tmp_path / "nope")


def test_scanner_reports_nested_folders_and_split_keeps_photos(tmp_path: Path) -> None:
    (tmp_path / "Ana" / "2019").mkdir(parents=True)
    for name in ("b.JPG", "a.png", "notes.txt"):
        (tmp_path / "Ana" / name).write_bytes(b"x")
    people, skipped = scan_people(tmp_path)
    assert [p.name for p in people["Ana"]] == ["a.png", "b.JPG", "notes.txt"]
    assert [(Path(s.path).name, s.reason) for s in skipped] == [("2019", NESTED_FOLDER)]
    photos, others = split_images(people["Ana"])
    assert [p.name for p in photos] == ["a.png", "b.JPG"]
    assert [(Path(s.path).name, s.reason) for s in others] == [("notes.txt", NOT_AN_IMAGE)]


def test_held_lock_retries_when_a_clean_up_removed_its_file_before_the_lock(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another process's clean-up may find the file created but not yet locked and
    remove it: the lock must then be taken on a file that is still there."""
    import models.io as io

    path = tmp_path / "staging.lock"
    real_lock, locked = io.lock_fd, []

    def racing_lock(fd: int) -> None:
        if not locked:
            path.unlink()  # the clean-up, between os.open and the lock
        real_lock(fd)
        locked.append(fd)

    monkeypatch.setattr(io, "lock_fd", racing_lock)
    with io.held_lock(path):
        assert len(locked) == 2 and path.exists()
        assert io.held_by_another(path)  # a second open file: sees the lock
    assert not io.held_by_another(path)
