"""The real downloader against a local HTTP server holding the shared model files where the
manifest's addresses put them: progress, sha256, atomic write, refusals, the site mirror."""

from __future__ import annotations

import itertools
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from models import registry
from models.errors import ModelError
from tests.helpers import mirror_routes, no_internet, public_routes, rewrite_to, serve_routes

# The MobileFaceNet gallery's files (the default CLIP recognizer's RN50.pt is not in
# ../shared), each from its own public address (an archive for SCRFD).
GALLERY_FILES = ("scrfd_2.5g", "mobilefacenet_128d", "minifasnet_v2", "minifasnet_v1se")


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch) -> None:
    no_internet(monkeypatch)


def _path(name: str) -> str:
    url = registry.spec(name).url
    assert url is not None
    return urlsplit(url).path


@pytest.mark.parametrize("name", GALLERY_FILES)
def test_public_address_downloads_checks_and_writes(
    name: str, tmp_path: Path, model_dir: Path
) -> None:
    calls: list[tuple[int, int | None]] = []
    with serve_routes(public_routes(tmp_path / "packs")) as base:
        path = registry.fetch(
            name,
            tmp_path / "models",
            progress=lambda done, total: calls.append((done, total)),
            opener=rewrite_to(base),
        )
        assert base.served == [_path(name)]  # exactly the manifest's address was asked for
    model = registry.spec(name)
    assert path == tmp_path / "models" / model.file
    assert registry.sha256_file(path) == model.sha256
    assert [p.name for p in path.parent.iterdir()] == [model.file]  # no temp, no archive
    assert path.stat().st_mode & 0o777 == 0o644
    done, total = calls[-1]
    assert total is not None and done == total and total >= (model.size or 0)
    assert all(a[0] <= b[0] for a, b in itertools.pairwise(calls))


def test_public_addresses_hold_the_shared_files(tmp_path: Path) -> None:
    """The manifest's addresses are the ones the shared files' sources publish (no network
    here: the URLs' form is what is checked, the files are checked by sha256 above)."""
    v2, v1se = registry.spec("minifasnet_v2"), registry.spec("minifasnet_v1se")
    release = "https://github.com/yakhyo/face-anti-spoofing/releases/download/weights/"
    assert v2.url == release + "MiniFASNetV2.onnx" and v1se.url == release + "MiniFASNetV1SE.onnx"
    mfn = registry.spec("mobilefacenet_128d")
    assert mfn.url == (
        "https://github.com/nytdevansh/V-Face/raw/ce7dd1b29166b24b10dea100f2f802ced180ca5c"
        "/model/mobilefacenet.onnx"
    )
    assert mfn.licence.startswith("GPL-3.0")
    assert registry.spec("clip_rn50_openai").size == 255827503


def test_a_different_file_is_refused_and_the_message_says_what_to_do(
    tmp_path: Path, model_dir: Path
) -> None:
    """A release asset that is not the checked file: nothing is written, the old file stays."""
    routes = {_path("minifasnet_v2"): model_dir / "minifasnet_v1se.onnx"}  # the wrong one
    models = tmp_path / "models"
    models.mkdir()
    corrupt = models / "minifasnet_v2.onnx"
    corrupt.write_bytes(b"half a model")
    with serve_routes(routes) as base, pytest.raises(ModelError) as info:
        registry.fetch("minifasnet_v2", models, opener=rewrite_to(base))
    message = str(info.value)
    expected = registry.spec("minifasnet_v2").sha256
    assert registry.spec("minifasnet_v1se").sha256 in message and expected in message
    assert "nothing was written" in message
    assert f"put minifasnet_v2.onnx (sha256 {expected}) in {models}" in message
    assert "kiosk models verify minifasnet_v2" in message
    assert [p.name for p in models.iterdir()] == ["minifasnet_v2.onnx"]
    assert corrupt.read_bytes() == b"half a model"


def test_a_short_download_is_refused_and_leaves_nothing(tmp_path: Path, model_dir: Path) -> None:
    route = _path("minifasnet_v1se")
    routes = {route: model_dir / "minifasnet_v1se.onnx"}
    with (
        serve_routes(routes, cut_after={route: 100_000}) as base,
        pytest.raises(ModelError) as info,
    ):
        registry.fetch("minifasnet_v1se", tmp_path, opener=rewrite_to(base))
    assert "broke off after 100000 of 1742315 bytes" in str(info.value)
    assert "Without internet, put minifasnet_v1se.onnx" in str(info.value)
    assert list(tmp_path.iterdir()) == []


def test_a_broken_archive_is_refused(tmp_path: Path) -> None:
    routes = {_path("scrfd_2.5g"): b"<html>rate limited</html>"}
    with serve_routes(routes) as base, pytest.raises(ModelError, match="not a zip file"):
        registry.fetch("scrfd_2.5g", tmp_path, opener=rewrite_to(base))
    assert list(tmp_path.iterdir()) == []


def test_the_mirror_comes_first_and_holds_plain_files(tmp_path: Path, model_dir: Path) -> None:
    with serve_routes(mirror_routes("/site/models")) as base:
        for name in (*GALLERY_FILES, "yunet_2026may"):  # yunet_2026may: no public address
            registry.fetch(name, tmp_path, mirror=f"{base}/site/models/", opener=rewrite_to(base))
        assert base.served == [
            f"/site/models/{registry.spec(n).file}" for n in (*GALLERY_FILES, "yunet_2026may")
        ]
    assert [r.status for r in registry.verify_all(tmp_path, [*GALLERY_FILES])] == ["ok"] * 4


def test_without_the_file_on_the_mirror_the_public_address_is_tried(
    tmp_path: Path, model_dir: Path
) -> None:
    routes: dict[str, Path | bytes] = {**public_routes(tmp_path / "packs")}
    routes["/m/minifasnet_v2.onnx"] = model_dir / "minifasnet_v1se.onnx"  # a wrong copy
    with serve_routes(routes) as base:
        mirror = f"{base}/m"
        registry.fetch("mobilefacenet_128d", tmp_path / "a", mirror=mirror, opener=rewrite_to(base))
        registry.fetch("minifasnet_v2", tmp_path / "a", mirror=mirror, opener=rewrite_to(base))
        assert base.served == [
            _path("mobilefacenet_128d"),  # the mirror's 404 is not served
            "/m/minifasnet_v2.onnx",
            _path("minifasnet_v2"),
        ]
    assert [r.status for r in registry.verify_all(tmp_path / "a", ["minifasnet_v2"])] == ["ok"]


def test_a_mirror_folder(tmp_path: Path, model_dir: Path) -> None:
    mirror = tmp_path / "usb stick"
    mirror.mkdir()
    (mirror / "minifasnet_v2.onnx").symlink_to(model_dir / "minifasnet_v2.onnx")
    path = registry.fetch("minifasnet_v2", tmp_path / "models", mirror=str(mirror))
    assert registry.sha256_file(path) == registry.spec("minifasnet_v2").sha256
    with pytest.raises(ModelError) as info:  # not on the stick, and no public address
        registry.fetch("yunet_2026may", tmp_path / "models", mirror=str(mirror))
    assert "site mirror" in str(info.value) and str(tmp_path / "models") in str(info.value)
    assert [p.name for p in (tmp_path / "models").iterdir()] == ["minifasnet_v2.onnx"]


def test_no_address_and_no_mirror_says_where_to_put_it(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match=r"no download address and no site mirror"):
        registry.fetch("yunet_2026may", tmp_path)
    assert registry.fix_command("yunet_2026may", tmp_path).startswith("put yunet_2026may.onnx")
    assert registry.fix_command("yunet_2026may", tmp_path, "http://m") == (
        "kiosk models fetch yunet_2026may"
    )
