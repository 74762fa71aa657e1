"""Helpers the tests share (tests never import each other): where ../shared is, skipping
or failing when it is missing, the shipped training settings, small synthetic data, a
tiny CLIP bundle, people enrolled into a store from a video, an image bomb, and the
temporary file a killed run leaves."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import numpy as np
import pytest
from numpy.typing import NDArray

from enroll.store import Consent, NewPhoto, PeopleStore, utc_now

if TYPE_CHECKING:
    from kiosk.bench.pgcluster import PgCluster
    from kiosk.config import KioskConfig
    from models.clip.bundle import RecognizerBundle
    from models.detector import FaceDetector
    from models.train.features import FaceSet
    from models.train.finetune import TrainSettings

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("KIOSK_SHARED", ROOT.parent / "shared"))
TINY = "kiosk-tiny-rn"  # tests/data/kiosk-tiny-rn.json, registered by the tiny_clip fixture


def skip_or_fail(message: str) -> NoReturn:
    """Skip a test whose data or tool is missing; fail it in CI (KIOSK_REQUIRE_SHARED=1),
    which provides ../shared and installs every tool, so nothing is hidden there."""
    if os.environ.get("KIOSK_REQUIRE_SHARED") == "1":
        pytest.fail(message)
    pytest.skip(message)


def shared_path(*parts: str) -> Path:
    path = SHARED.joinpath(*parts)
    if not path.exists():
        skip_or_fail(f"shared test data missing: {path} (set KIOSK_SHARED)")
    return path


def train_settings(**overrides: Any) -> TrainSettings:
    """The shipped [train] defaults (kiosk/config.py), with ``overrides``."""
    from kiosk.build import train_settings as from_config
    from kiosk.config import KioskConfig

    return dataclasses.replace(from_config(KioskConfig()), **overrides)


def tiny_door_config(epochs: int = 2) -> KioskConfig:
    """A door's configuration for the bench tests: the tiny untrained CLIP
    (tests/data/kiosk-tiny-rn.json), the CPU, no liveness check."""
    from kiosk.config import KioskConfig

    return KioskConfig.model_validate(
        {
            "clip": {"model": str(ROOT / "tests" / "data" / f"{TINY}.json"), "pretrained": "none"},
            "train": {"epochs": epochs},
            "models": {"device": "cpu"},
            "liveness": {"enabled": False},
        }
    )


def consent(days_ago: float = 0.0) -> Consent:
    return Consent("test-1", datetime.now(UTC) - timedelta(days=days_ago))


def photos(n: int = 3, seed: int = 0, original: bool = False) -> list[NewPhoto]:
    rng = np.random.default_rng(seed)
    return [
        NewPhoto(
            crop=rng.integers(0, 255, (224, 224, 3), dtype=np.uint8),
            pose="front",
            original=rng.integers(0, 255, (48, 64, 3), dtype=np.uint8) if original else None,
        )
        for _ in range(n)
    ]


def tree(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def synthetic_faceset(people: int, per_person: int, dim: int, seed: int = 0) -> FaceSet:
    """Well-separated features: a random direction per person plus a little noise."""
    from models.train.features import FaceSet

    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(people, dim))
    features = {
        f"p{i}": (centres[i] + 0.05 * rng.normal(size=(per_person, dim))).astype(np.float32)
        for i in range(people)
    }
    return FaceSet(features=features, sources={k: [] for k in features}, images=people * per_person)


def tiny_bundle(tmp_path: Path, detector: Any) -> Path:
    """A bundle of 3 synthetic people on the tiny CLIP (needs the ``tiny_clip`` fixture)."""
    from models.clip.bundle import save_bundle
    from models.clip.towers import build_clip
    from models.train.bundle import make_bundle
    from models.train.finetune import finetune_text_encoder

    model, identity = build_clip(TINY, "none", None, init_seed=0)
    settings = train_settings(epochs=1, trainable_layers=1, device="cpu")
    result = finetune_text_encoder(model, TINY, synthetic_faceset(3, 5, 32), settings)
    bundle = make_bundle(result, identity, settings, detector, 0.8, 0.0, {"images": 15})
    return save_bundle(bundle, tmp_path / "people.bundle")


def plain_bundle(people: list[str], pretrained: str = "none") -> RecognizerBundle:
    """A bundle of zeros for ``people`` (no model is built): for tests of files, not accuracy."""
    from models.clip.bundle import BundleSettings, RecognizerBundle
    from models.clip.identity import ClipIdentity

    settings = BundleSettings(
        "p {name}", 8, 1, 0.8, 0.0, "yunet", 320, 1, 1e-3, 0.0, 4, 4, 0, 0.2, True, True
    )
    identity = ClipIdentity("RN50", pretrained, 0, "", "x")  # type: ignore[arg-type]
    dim = 4
    return RecognizerBundle(
        list(people),
        np.zeros((len(people), dim), np.float32),
        np.zeros(dim, np.float32),
        100.0,
        identity,
        settings,
        {},
        {},
    )


def video_frames(video: Path, count: int, step: int = 1) -> Iterator[NDArray[np.uint8]]:
    """Every ``step``-th frame of a video, ``count`` of them."""
    import cv2

    capture = cv2.VideoCapture(str(video))
    try:
        for index in range(count * step):
            ok, frame = capture.read()
            assert ok, f"{video} has fewer than {count * step} frames"
            if index % step == 0:
                yield np.asarray(frame, dtype=np.uint8)
    finally:
        capture.release()


def enroll_from_video(
    store_dir: Path,
    name: str,
    video: Path,
    detector: FaceDetector,
    photos: int = 6,
    **store: Any,
) -> str:
    """What the wizard saves: aligned 224 crops of the largest face, through the store API
    (``store``: PeopleStore's options, a key); the person's opaque id."""
    from models.align import CLIP_SIZE, align_face

    crops = []
    for frame in video_frames(video, photos * 4, step=8):
        faces = detector.detect(frame, mode="largest")
        if faces:
            crops.append(NewPhoto(align_face(frame, faces[0].kps, CLIP_SIZE), pose="front"))
        if len(crops) == photos:
            break
    assert len(crops) == photos, f"{video}: a face in only {len(crops)} sampled frames"
    with PeopleStore(store_dir, **store) as opened:
        return opened.add_person(name, crops, Consent("test", utc_now())).uid


# -- a throwaway PostgreSQL cluster (the `postgres` fixture) ----------------------------


def start_test_cluster(root: Path) -> PgCluster:
    """kiosk/bench/pgcluster.py's cluster; skipped (failed in CI) without PostgreSQL."""
    from kiosk.bench.pgcluster import PostgresMissing, start_cluster

    try:
        return start_cluster(root)
    except PostgresMissing as error:
        skip_or_fail(str(error))


_kiosk_roles = iter(range(1, 1_000_000))


def site_kiosks(cluster: PgCluster, dbname: str, **kinds: str) -> dict[str, Any]:
    """Migrate ``dbname`` (with the group roles) and make one login role per kiosk:
    ``door="door"`` makes a door kiosk; the SiteConfig of each, by the given key."""
    from kiosk.config import SiteConfig
    from kiosk.site.schema import add_kiosk, migrate

    configs = {}
    with cluster.connect(dbname) as conn:
        conn.autocommit = False
        migrate(conn, create_roles=True)
        conn.commit()
        for key, kind in kinds.items():
            role = f"k{os.getpid()}_{next(_kiosk_roles)}_{key}"
            add_kiosk(conn, role, kind, password=f"pw-{role}")
            configs[key] = SiteConfig(
                host=str(cluster.socket_dir),
                port=cluster.port,
                dbname=dbname,
                user=role,
                poll_s=1.0,
                connect_timeout_s=2,
            )
        conn.commit()
    return configs


@contextlib.contextmanager
def serve_folder(folder: Path) -> Iterator[str]:
    """An HTTP server on 127.0.0.1 (a free port) serving ``folder``; yields its base URL.

    The only network the tests use: downloads are tested against it, never the internet.
    """
    import functools
    import threading
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

    handler = functools.partial(Quiet, directory=str(folder))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, name="test-http", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@contextlib.contextmanager
def serve_routes(
    routes: dict[str, Path | bytes], *, cut_after: dict[str, int] | None = None
) -> Iterator[str]:
    """An HTTP server on 127.0.0.1 answering each URL path of ``routes`` with that file's
    bytes (a Path is read when asked: shared files are served, never copied) or with the
    bytes given; any other path is a 404. ``cut_after[path] = n`` announces the whole
    Content-Length, sends ``n`` bytes and closes the connection: a dropped download.
    Yields the base URL; ``served`` on it lists the paths asked for."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    cuts = cut_after or {}
    served: list[str] = []

    class Routes(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = routes.get(self.path)
            if body is None:
                self.send_error(404, "not on this test server")
                return
            served.append(self.path)
            data = body.read_bytes() if isinstance(body, Path) else body
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data[: cuts.get(self.path, len(data))])
            self.close_connection = True

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Routes)
    thread = threading.Thread(target=server.serve_forever, name="test-http", daemon=True)
    thread.start()
    base = ServedBase(f"http://127.0.0.1:{server.server_address[1]}")
    base.served = served
    try:
        yield base
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


class ServedBase(str):
    """A test server's base URL that also lists the paths it was asked for."""

    served: list[str]


def shared_model_file(name: str) -> Path | None:
    """The ../shared file of manifest model ``name``, when one with its sha256 is there."""
    from models import registry

    model = registry.spec(name)
    path = SHARED / "models" / model.file
    if path.is_file() and registry.sha256_file(path) == model.sha256:
        return path
    return None


def public_routes(scratch: Path) -> dict[str, Path]:
    """The manifest's public URLs (their paths) mapped to the shared model files, laid out
    as the real servers have them: an archive model's pack is built in ``scratch`` with
    the shared file as its member. Models without a shared file are left out."""
    import zipfile
    from urllib.parse import urlsplit

    from models import registry

    scratch.mkdir(parents=True, exist_ok=True)
    routes: dict[str, Path] = {}
    for name, model in registry.load_manifest().items():
        path = shared_model_file(name)
        if model.url is None or path is None:
            continue
        if model.archive_member:
            archive = scratch / model.url.rsplit("/", 1)[-1]
            with zipfile.ZipFile(archive, "w") as zf:
                zf.write(path, f"pack/{model.archive_member}")
            path = archive
        routes[urlsplit(model.url).path] = path
    return routes


def mirror_routes(prefix: str = "/kiosk-models") -> dict[str, Path]:
    """A site mirror's layout: every shared model file under ``prefix`` by its file name."""
    from models import registry

    routes = {}
    for name, model in registry.load_manifest().items():
        path = shared_model_file(name)
        if path is not None:
            routes[f"{prefix}/{model.file}"] = path
    return routes


def no_internet(monkeypatch: pytest.MonkeyPatch) -> None:
    """Downloads reach only 127.0.0.1 and local files: any other address fails at once, as
    on a site without internet (and no test can reach the real one)."""
    import urllib.error
    import urllib.request
    from urllib.parse import urlsplit

    real = urllib.request.urlopen

    def urlopen(url: str, *args: Any, **kwargs: Any) -> Any:
        parts = urlsplit(url)
        if parts.scheme != "file" and parts.hostname != "127.0.0.1":
            raise urllib.error.URLError(f"no internet here ({parts.hostname})")
        return real(url, *args, **kwargs)

    monkeypatch.setattr(urllib.request, "urlopen", urlopen)


def rewrite_to(base: str) -> Callable[[str], object]:
    """An opener for :func:`models.registry.fetch` that sends each URL's path to ``base``
    (the test server) with the real downloader: the public addresses, served locally."""
    from urllib.parse import urlsplit

    from models import registry

    return lambda url: registry.open_url(base + urlsplit(url).path)


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that claims ``width`` x ``height`` pixels in a few bytes: an image bomb."""
    from kiosk.bench.abuse import png_bomb

    return png_bomb(width, height)


BOMB_REASON = r"30000 x 30000 pixels|too large \(900\.0 megapixels\)"  # how a bomb is refused


def stale_temp(folder: Path, name: str = ".tmp-k1lled_0.npz", age_s: float = 7200.0) -> Path:
    """The temporary file of a write killed ``age_s`` seconds ago (a ``models.io`` name)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_bytes(b"half of a fi")
    then = time.time() - age_s
    os.utime(path, (then, then))
    return path


@contextlib.contextmanager
def xvfb_display(width: int = 1280, height: int = 720) -> Iterator[str]:
    """A real X server (Xvfb) with one ``width`` x ``height`` screen; yields its DISPLAY.

    -displayfd: Xvfb picks a free display number itself and writes it when ready.
    """
    import shutil
    import subprocess

    if shutil.which("Xvfb") is None:
        skip_or_fail("Xvfb is not installed (packaging/install.sh installs it)")
    read_fd, write_fd = os.pipe()
    screen = f"{width}x{height}x24"
    server = subprocess.Popen(
        ["Xvfb", "-displayfd", str(write_fd), "-screen", "0", screen, "-nolisten", "tcp"],
        pass_fds=(write_fd,),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    os.close(write_fd)
    try:
        with os.fdopen(read_fd) as ready:
            number = ready.readline().strip()
        if not number:
            pytest.fail("Xvfb did not start")
        yield f":{number}"
    finally:
        server.terminate()
        server.wait(timeout=10)


def x_app_env(display: str) -> dict[str, str]:
    """The environment for a Qt process on ``display``: cv2's Qt paths and Wayland left out."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("QT_QPA_PLATFORM_PLUGIN_PATH", "QT_QPA_FONTDIR", "WAYLAND_DISPLAY")
    }
    env.update(DISPLAY=display, QT_QPA_PLATFORM="xcb")
    return env


def wait_events(ms: int) -> None:
    """Process Qt events for ``ms`` milliseconds, with the GIL released meanwhile.

    For the Xvfb apps, which run without pytest-qt's ``qtbot.wait``: ``QTest.qWait`` keeps
    the GIL while it sleeps, so a worker thread (the wizard's capture loop, the pipeline)
    runs only between its calls, at a few frames a second instead of the camera's pace.
    ``QEventLoop.exec`` releases it.
    """
    from PySide6.QtCore import QEventLoop, QTimer

    loop = QEventLoop()
    QTimer.singleShot(ms, loop.quit)
    loop.exec()
