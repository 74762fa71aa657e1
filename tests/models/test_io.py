"""models.io: atomic writes, the one image reader and its limits, the folder scanner."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest

from models.errors import UserError
from models.io import (
    ImageRefused,
    atomic_writer,
    decode_image,
    read_image,
    scan_people,
    write_bytes_atomic,
    write_json_atomic,
)


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that claims ``width`` x ``height`` pixels in a few bytes: an image bomb."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\x00\x00"))
        + chunk(b"IEND", b"")
    )


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
