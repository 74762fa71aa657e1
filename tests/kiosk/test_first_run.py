"""First run: what is missing, asking, fetching with a progress bar, offline (no network)."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import ClassVar

import pytest

from kiosk.cli import main
from kiosk.config import KioskConfig
from kiosk.setup.first_run import ensure_models, needed_models
from models import registry
from models.errors import UserError
from tests.helpers import plain_bundle

NAME = "scrfd_0.5g"


class _Response(io.BytesIO):
    headers: ClassVar[dict[str, str]] = {}


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture(scope="module")
def archive(model_dir: Path) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.writestr("buffalo_sc/det_500m.onnx", (model_dir / "scrfd_500m_bnkps.onnx").read_bytes())
    return buffer.getvalue()


def _opener(payload: bytes, calls: list[str]) -> Callable[[str], _Response]:
    def open_url(url: str) -> _Response:
        calls.append(url)
        response = _Response(payload)
        response.headers = {"Content-Length": str(len(payload))}
        return response

    return open_url


def test_needed_models_follow_the_config() -> None:
    default = KioskConfig()  # CLIP, not trained yet: the first training needs RN50.pt
    assert needed_models(default) == [
        "scrfd_2.5g",
        "clip_rn50_openai",
        "minifasnet_v2",
        "minifasnet_v1se",
    ]
    gallery = KioskConfig.model_validate({"recognizer": {"kind": "embedding_gallery"}})
    assert needed_models(gallery)[:2] == ["scrfd_2.5g", "mobilefacenet_128d"]
    fusion = KioskConfig.model_validate({"recognizer": {"kind": "fusion"}})
    assert needed_models(fusion)[:3] == ["scrfd_2.5g", "mobilefacenet_128d", "clip_rn50_openai"]
    lean = KioskConfig.model_validate(
        {
            "detector": {"name": "yunet"},
            "clip": {"pretrained": "none"},
            "liveness": {"enabled": False},
        }
    )
    assert needed_models(lean) == ["yunet"]


def test_nothing_missing_asks_nothing(model_dir: Path) -> None:
    out = io.StringIO()
    assert ensure_models([NAME], model_dir, stdin=io.StringIO(), out=out) == []
    assert out.getvalue() == ""


def test_yes_fetches_with_a_progress_bar(tmp_path: Path, archive: bytes) -> None:
    out, calls = io.StringIO(), []  # type: ignore[var-annotated]
    fetched = ensure_models(
        [NAME],
        tmp_path,
        assume_yes=True,
        stdin=io.StringIO(),
        out=out,
        opener=_opener(archive, calls),
    )
    assert fetched == [NAME]
    assert registry.model_path(NAME, tmp_path).is_file()
    text = out.getvalue()
    assert "2.5 MB" in text and "non-commercial research only" in text  # size, licence
    assert "yunet" in text  # the permissive alternative is named
    assert "100%" in text and "#" * 30 in text and f"{NAME}: ok" in text


def test_terminal_asks_and_no_means_nothing_downloaded(tmp_path: Path, archive: bytes) -> None:
    calls: list[str] = []
    out = io.StringIO()
    with pytest.raises(UserError, match=f"kiosk models fetch {NAME}"):
        ensure_models(
            [NAME], tmp_path, stdin=_Terminal("n\n"), out=out, opener=_opener(archive, calls)
        )
    assert "[y/N]" in out.getvalue() and not calls and not list(tmp_path.iterdir())
    assert ensure_models(
        [NAME], tmp_path, stdin=_Terminal("y\n"), out=out, opener=_opener(archive, calls)
    ) == [NAME]


def test_no_terminal_downloads_nothing_and_gives_the_command(
    tmp_path: Path, archive: bytes
) -> None:
    calls: list[str] = []
    with pytest.raises(UserError) as info:
        ensure_models(
            [NAME],
            tmp_path,
            command="kiosk run",
            stdin=io.StringIO(),
            out=io.StringIO(),
            opener=_opener(archive, calls),
        )
    assert f"kiosk models fetch {NAME}" in str(info.value) and "kiosk run --yes" in str(info.value)
    assert not calls


def test_offline_names_the_folder_and_each_sha256(tmp_path: Path) -> None:
    def offline(url: str) -> _Response:
        raise OSError("network is unreachable")

    out = io.StringIO()
    names = [NAME, "yunet_2026may"]  # the second has no address at all
    with pytest.raises(UserError) as info:
        ensure_models(
            names, tmp_path, assume_yes=True, stdin=io.StringIO(), out=out, opener=offline
        )
    message = str(info.value)
    assert str(tmp_path) in message
    for name in names:
        model = registry.spec(name)
        assert model.file in message and model.sha256 in message
    assert "FAILED" in out.getvalue()
    assert not list(tmp_path.iterdir())


def test_kiosk_run_without_models_says_what_and_how(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for var in ("QT_QPA_PLATFORM", "DISPLAY", "WAYLAND_DISPLAY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("KIOSK_MODEL_DIR", str(tmp_path))
    monkeypatch.setattr("sys.stdin", io.StringIO())
    config = tmp_path / "kiosk.toml"
    config.write_text('[detector]\nname = "yunet"\n[liveness]\nenabled = false\n')
    assert main(["run", "--windowed", "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert "face_detection_yunet_2023mar.onnx" in err and "MIT" in err
    assert f"kiosk --config {config} models fetch yunet clip_rn50_openai" in err
    assert f"kiosk --config {config} run --windowed --yes" in err


def _clip_config(tmp_path: Path, pretrained: str) -> KioskConfig:
    from models.clip.bundle import save_bundle

    bundle_path = tmp_path / "people.bundle"
    save_bundle(plain_bundle(["a", "b"], pretrained), bundle_path)
    return KioskConfig.model_validate(
        {
            "detector": {"name": "yunet"},
            "liveness": {"enabled": False},
            "recognizer": {"kind": "clip", "bundle": str(bundle_path)},
        }
    )


def test_clip_weights_needed_only_to_rebuild_the_tower(tmp_path: Path) -> None:
    from models.clip.bundle import load_bundle
    from models.clip.classifier import onnx_tower_path

    config = _clip_config(tmp_path, "openai")
    assert needed_models(config) == ["yunet", "clip_rn50_openai"]
    path = config.recognizer.bundle
    assert path is not None
    onnx_tower_path(path, load_bundle(path).identity).write_bytes(b"cached tower")
    assert needed_models(config) == ["yunet"]
    assert needed_models(_clip_config(tmp_path / "none", "none")) == ["yunet"]
    path.unlink()  # no bundle yet: the first one is trained from the store, with RN50.pt
    assert needed_models(config) == ["yunet", "clip_rn50_openai"]


def test_a_clip_first_run_offers_the_clip_weights(tmp_path: Path) -> None:
    config = KioskConfig.model_validate(
        {"recognizer": {"kind": "clip", "bundle": str(tmp_path / "nobody.bundle")}}
    )
    names = needed_models(config)
    assert "clip_rn50_openai" in names
    out = io.StringIO()
    with pytest.raises(UserError) as info:
        ensure_models(names, tmp_path / "models", stdin=_Terminal("n\n"), out=out)
    assert "RN50.pt (clip_rn50_openai, 255.8 MB): missing" in out.getvalue()
    assert "licence: MIT" in out.getvalue()
    assert f"Download {len(names)} file(s) now?" in out.getvalue()
    assert f"kiosk models fetch {' '.join(names)}" in str(info.value)


def test_models_list_shows_each_licence(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models", "--model-dir", str(tmp_path), "list"]) == 0
    out = capsys.readouterr().out
    at = out.index("mobilefacenet_128d")
    assert "licence: GPL-3.0" in out[at : out.index("\n", out.index("\n", at) + 1)]
