from __future__ import annotations

import io
import re
import zipfile
from pathlib import Path
from typing import ClassVar

import pytest

from kiosk.cli import main
from models import registry
from models.errors import ModelError
from tests.helpers import stale_temp


def test_manifest_entries_are_complete() -> None:
    manifest = registry.load_manifest()
    assert {"scrfd_10g", "scrfd_2.5g", "scrfd_0.5g", "clip_rn50_openai"} <= set(manifest)
    for model in manifest.values():
        # hashlib's hexdigest is what it is compared with: 64 lowercase hex digits
        assert re.fullmatch(r"[0-9a-f]{64}", model.sha256), (model.name, model.sha256)
        assert model.licence and model.source and model.preprocessing


def test_shared_models_verify(model_dir: Path) -> None:
    for name in ("scrfd_2.5g", "scrfd_0.5g", "mobilefacenet_128d"):
        assert registry.model_path(name, model_dir).is_file()


def test_missing_model_error_names_file_sha_and_fix(tmp_path: Path) -> None:
    with pytest.raises(ModelError) as info:
        registry.model_path("scrfd_2.5g", tmp_path)
    message = str(info.value)
    assert "scrfd_2.5g_bnkps.onnx" in message
    assert registry.spec("scrfd_2.5g").sha256 in message
    assert "kiosk models fetch scrfd_2.5g" in message


def test_corrupt_model_is_refused(tmp_path: Path) -> None:
    (tmp_path / "scrfd_2.5g_bnkps.onnx").write_bytes(b"not a model")
    with pytest.raises(ModelError, match="corrupt"):
        registry.model_path("scrfd_2.5g", tmp_path)


def test_model_dir_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KIOSK_MODEL_DIR", str(tmp_path / "env"))
    assert registry.resolve_model_dir(tmp_path / "cfg") == tmp_path / "cfg"
    assert registry.resolve_model_dir(None) == tmp_path / "env"
    monkeypatch.delenv("KIOSK_MODEL_DIR")
    assert registry.resolve_model_dir(None).name == "models"


class _FakeResponse(io.BytesIO):
    headers: ClassVar[dict[str, str]] = {}


def _zip_with(member: str, payload: bytes) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.writestr(f"pack/{member}", payload)
    return buffer.getvalue()


def test_fetch_extracts_checks_and_writes_atomically(tmp_path: Path, model_dir: Path) -> None:
    real = (model_dir / "scrfd_500m_bnkps.onnx").read_bytes()
    archive = _zip_with("det_500m.onnx", real)
    path = registry.fetch("scrfd_0.5g", tmp_path, opener=lambda url: _FakeResponse(archive))
    assert path.read_bytes() == real
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scrfd_500m_bnkps.onnx"]


def test_fetch_with_wrong_checksum_writes_nothing(tmp_path: Path) -> None:
    archive = _zip_with("det_500m.onnx", b"tampered")
    with pytest.raises(ModelError, match="expected"):
        registry.fetch("scrfd_0.5g", tmp_path, opener=lambda url: _FakeResponse(archive))
    assert list(tmp_path.iterdir()) == []


def test_dropped_download_leaves_nothing_and_old_temps_go(tmp_path: Path) -> None:
    class Dropped(_FakeResponse):
        def read(self, size: int | None = -1) -> bytes:
            if self.tell() > 0:
                raise ConnectionResetError("connection reset by peer")
            return super().read(10)

    killed = stale_temp(tmp_path, ".tmp-k1lled_0.onnx")  # what kill -9 left in a fetch
    mine = tmp_path / "notes.txt"
    mine.write_text("the operator's", encoding="utf-8")
    with pytest.raises(ModelError, match="connection reset"):
        registry.fetch("yunet", tmp_path, opener=lambda url: Dropped(b"x" * 100))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]
    killed = stale_temp(tmp_path, ".tmp-k1lled_1.zip")
    assert [r.status for r in registry.verify_all(tmp_path, ["yunet"])] == ["missing"]
    assert not killed.exists() and mine.exists()


def test_fetch_offline_says_where_to_put_the_file(tmp_path: Path) -> None:
    def offline(url: str) -> _FakeResponse:
        raise OSError("network is unreachable")

    with pytest.raises(ModelError, match=r"Without internet, put scrfd_500m_bnkps\.onnx"):
        registry.fetch("scrfd_0.5g", tmp_path, opener=offline)


def test_cli_verify_reports_missing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models", "--model-dir", str(tmp_path), "verify", "scrfd_2.5g"]) == 1
    assert "missing" in capsys.readouterr().out


def test_cli_verify_ok(model_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models", "--model-dir", str(model_dir), "verify", "scrfd_2.5g"]) == 0
