"""Frame sources and the newest-frame slot: headless, no camera needed."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest

from kiosk.live.slot import NewestSlot
from kiosk.live.sources import ImageFolderSource, LiveCaptureSource, VideoFileSource, open_source
from models.errors import UserError
from tests.helpers import BOMB_REASON, png_header_only


def read_all(source: VideoFileSource | ImageFolderSource, limit: int = 10_000) -> list[int]:
    indices = []
    for _ in range(limit):
        frame = source.read()
        if frame is not None:
            assert frame.image.ndim == 3 and frame.image.dtype == np.uint8
            indices.append(frame.index)
        elif source.finished:
            break
    return indices


def test_video_file_reads_to_its_end(shared: Callable[..., Path]) -> None:
    source = open_source(str(shared("videos", "solo_01.mp4")), realtime=False)
    assert isinstance(source, VideoFileSource)
    indices = read_all(source)
    assert indices == list(range(78))
    assert source.finished and "ended" in source.status
    assert source.read() is None


def test_looping_video_restarts(shared: Callable[..., Path]) -> None:
    source = VideoFileSource(shared("videos", "solo_01.mp4"), loop=True)
    frames = [source.read() for _ in range(100)]
    assert all(frame is not None for frame in frames)
    assert not source.finished


def test_video_paced_at_camera_speed(shared: Callable[..., Path]) -> None:
    source = VideoFileSource(shared("videos", "solo_01.mp4"), realtime=True)  # 25 fps
    started = time.monotonic()
    for _ in range(11):
        assert source.read() is not None
    assert time.monotonic() - started >= 10 / 25 * 0.9


def test_image_folder_skips_unreadable_images(tmp_path: Path) -> None:
    for i in range(3):
        cv2.imwrite(str(tmp_path / f"{i}.png"), np.full((40, 60, 3), i * 50, np.uint8))
    (tmp_path / "3_broken.jpg").write_bytes(b"not a jpeg")
    (tmp_path / "notes.txt").write_text("ignored")
    source = open_source(str(tmp_path), realtime=False)
    assert isinstance(source, ImageFolderSource)
    assert read_all(source) == [0, 1, 2]
    assert source.finished


def test_image_folder_skips_an_image_bomb_with_a_status(tmp_path: Path) -> None:
    cv2.imwrite(str(tmp_path / "0.png"), np.full((40, 60, 3), 9, np.uint8))
    (tmp_path / "1_bomb.png").write_bytes(png_header_only(30_000, 30_000))
    cv2.imwrite(str(tmp_path / "2.png"), np.full((40, 60, 3), 99, np.uint8))
    source = ImageFolderSource(tmp_path)
    first = source.read()
    assert first is not None and int(first.image.mean()) == 9
    assert source.read() is None and not source.finished
    assert re.fullmatch(
        r"skipped: 1_bomb\.png is (" + BOMB_REASON + r").*are not read", source.status
    )
    last = source.read()
    assert last is not None and int(last.image.mean()) == 99


def test_missing_camera_reports_and_retries_without_raising() -> None:
    source = open_source("7", retry_initial_s=0.05, retry_max_s=0.1)
    assert isinstance(source, LiveCaptureSource)
    deadline = time.monotonic() + 0.6
    while time.monotonic() < deadline:
        assert source.read() is None
        time.sleep(0.01)
    assert source.status.startswith("no camera at index 7, retrying in")
    assert source.attempts >= 3
    assert not source.finished


def test_unreachable_stream_reports_status() -> None:
    source = open_source("rtsp://127.0.0.1:9/none", retry_initial_s=5.0)
    assert source.read() is None
    assert source.status == "cannot open stream rtsp://127.0.0.1:9/none, retrying in 5 s"


@pytest.mark.parametrize("spec", ["/no/such/video.mp4", "", "   "])
def test_bad_source_is_a_user_error(spec: str) -> None:
    with pytest.raises(UserError):
        open_source(spec)


def test_empty_folder_and_non_video_are_user_errors(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="holds no images"):
        open_source(str(tmp_path))
    text = tmp_path / "video.mp4"
    text.write_text("not a video")
    with pytest.raises(UserError, match="cannot open video"):
        open_source(str(text))


def test_newest_slot_keeps_only_the_newest_and_counts_drops() -> None:
    slot: NewestSlot[int] = NewestSlot()
    assert slot.take(timeout=0.01) is None
    for i in range(5):
        slot.put(i)
    assert slot.dropped == 4
    assert slot.take() == 4
    assert slot.take(timeout=0.01) is None  # taken items are not handed out twice
    assert slot.peek() == 4  # but the newest stays readable
    slot.put(5)
    assert slot.take() == 5
    assert slot.dropped == 4  # taken in time: nothing dropped


def test_newest_slot_close_wakes_a_waiting_taker() -> None:
    slot: NewestSlot[int] = NewestSlot()
    got: list[int | None] = []
    taker = threading.Thread(target=lambda: got.append(slot.take()))
    taker.start()
    time.sleep(0.05)
    slot.close()
    taker.join(timeout=2)
    assert not taker.is_alive() and got == [None]


def test_lost_stream_reconnects_with_backoff(shared: Callable[..., Path]) -> None:
    # a file opened as a stream ends like a stream that went down, and reopens like one
    source = LiveCaptureSource(
        str(shared("videos", "solo_01.mp4")), retry_initial_s=0.05, retry_max_s=0.1
    )
    frames = [source.read() for _ in range(78)]
    assert all(frame is not None for frame in frames) and source.status == ""
    assert source.read() is None
    assert source.status.endswith("lost, reconnecting in 50 ms")
    assert source.read() is None  # backing off, not hammering the device
    time.sleep(0.06)
    frame = source.read()
    assert frame is not None and frame.index == 78 and source.status == ""
    assert source.attempts == 2


def test_no_camera_logs_one_line_and_opencv_says_nothing(tmp_path: Path) -> None:
    """Retrying a missing camera: our status and one log line, none of OpenCV's own
    ("Camera index out of range", "can't open camera by index") on any retry."""
    import os
    import subprocess
    import sys

    from tests.helpers import ROOT

    script = (
        "import time\n"
        "from kiosk.live.sources import open_source\n"
        "source = open_source('0', retry_initial_s=0.05, retry_max_s=0.1)\n"
        "until = time.monotonic() + 1.5\n"
        "while time.monotonic() < until:\n"
        "    if source.read() is not None:\n"
        "        print('CAMERA'); break\n"
        "    time.sleep(0.02)\n"
        "print(source.attempts, source.status)\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENCV_")}
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    if "CAMERA" in done.stdout:
        pytest.skip("this machine has a camera at index 0")
    attempts, status = done.stdout.split(" ", 1)
    assert int(attempts) >= 5 and status.startswith("no camera at index 0, retrying in")
    assert done.stderr.splitlines() == [
        "no camera at index 0 (no more is logged while it retries)"
    ], done.stderr
