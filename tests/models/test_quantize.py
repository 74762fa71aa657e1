"""int8 quantization, judged on a trained network with real crops (MobileFaceNet on LFW)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from models.align import align_arcface
from models.embedder import arcface_blob
from models.io import read_image, scan_people
from models.quantize import agreement, embed, quantize_int8


@pytest.mark.slow
def test_int8_mobilefacenet_agrees_with_fp32_on_real_faces(
    shared: Callable[..., Path], tmp_path: Path
) -> None:
    from models.detector import FaceDetector

    detector = FaceDetector.from_name("scrfd_2.5g", shared("models"), input_size=320)
    people, _ = scan_people(shared("faces", "lfw_min10"))
    blobs, labels, gallery = [], [], []
    for name, files in list(people.items())[:30]:
        for index, file in enumerate(files[:4]):
            image = read_image(file)
            faces = detector.detect(image, mode="largest")
            if faces:
                blobs.append(arcface_blob([align_arcface(image, faces[0].kps)]))
                labels.append(name)
                gallery.append(index < 2)
    enrolled = np.array(gallery)
    fp32 = shared("models", "mobilefacenet_128d.onnx")
    calibration = [blob for blob, g in zip(blobs, gallery, strict=True) if g]
    int8 = quantize_int8(fp32, tmp_path / "mfn.int8.onnx", calibration)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mfn.int8.onnx"]
    assert int8.stat().st_size < fp32.stat().st_size / 2  # int8 weights, not float

    result = agreement(embed(fp32, blobs), embed(int8, blobs), labels, enrolled)
    assert result.probes > 40
    # A broken calibration (e.g. ranges from blank images) drops agreement far below this.
    assert result.top1_agreement >= 0.95
    assert result.cosine_mean >= 0.97
    assert result.top1_int8 >= result.top1_fp32 - 0.05


def test_calibration_needs_data(tmp_path: Path, shared: Callable[..., Path]) -> None:
    with pytest.raises(ValueError, match="at least one blob"):
        quantize_int8(shared("models", "mobilefacenet_128d.onnx"), tmp_path / "x.onnx", [])
    assert not (tmp_path / "x.onnx").exists()


def test_int8_kernels_saturate_only_on_x86_without_vnni(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import platform

    from models.quantize import int8_recipe, saturating_cpu

    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("flags\t\t: fpu sse2 avx2 avx512f avx512_vnni\n")
    monkeypatch.setattr(platform, "machine", lambda: "x86_64")
    assert not saturating_cpu(cpuinfo)
    cpuinfo.write_text("flags\t\t: fpu sse2 avx2 fma\n")
    assert saturating_cpu(cpuinfo)
    assert saturating_cpu(tmp_path / "missing")  # cannot tell: the safe choice
    monkeypatch.setattr(platform, "machine", lambda: "aarch64")
    assert not saturating_cpu(cpuinfo)
    assert int8_recipe(reduce_range=True) == "u8s8-r7" and int8_recipe(False) == "u8s8"


def test_the_int8_clip_tower_loads_and_answers_for_a_bundle(
    tmp_path: Path,
    tiny_clip: str,
    detector: object,
    shared: Callable[..., Path],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The door's int8 path: made once beside the fp32 tower from calibration crops, named
    after this machine's recipe, reused after; without crops it stays fp32 and says so."""
    import shutil

    import cv2

    from models.clip.classifier import ClipRecognizer, int8_tower_path
    from models.clip.towers import encode_crops
    from models.quantize import int8_recipe
    from tests.helpers import tiny_bundle

    path = tiny_bundle(tmp_path, detector)
    fp32 = ClipRecognizer.load(path, None)
    image = cv2.imread(str(shared("faces", "portraits", "newton.png")))
    crop = fp32.align(image, detector.detect(image, mode="largest")[0])  # type: ignore[attr-defined]
    crops = [
        crop,
        np.ascontiguousarray(crop[:, ::-1]),
        np.ascontiguousarray(crop[::2, ::2].repeat(2, 0).repeat(2, 1)),
    ]
    asked: list[int] = []

    def calibration() -> list[np.ndarray]:
        asked.append(1)
        return crops

    int8 = ClipRecognizer.load(path, None, precision="int8", calibration=calibration)
    assert (fp32.precision, int8.precision) == ("fp32", "int8") and asked == [1]
    assert int8.tower.path == int8_tower_path(fp32.tower.path)  # type: ignore[union-attr]
    assert int8.tower.path.name.endswith(f".int8-{int8_recipe()}.onnx")  # type: ignore[union-attr]
    (prediction,) = int8.predict([crop])
    assert prediction.best in {"p0", "p1", "p2"} and 0.0 < prediction.confidence <= 1.0
    assert np.allclose(int8.probabilities(crops).sum(axis=1), 1.0, atol=1e-4)
    a, b = encode_crops(fp32.tower, crops), encode_crops(int8.tower, crops)
    cosine = np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    assert cosine.min() > 0.9  # the same features, to int8's precision
    again = ClipRecognizer.load(path, None, precision="int8", calibration=calibration)
    assert again.precision == "int8" and asked == [1]  # the file made once is reused

    other = tmp_path / "other"
    other.mkdir()
    shutil.copy(path, other / path.name)
    with caplog.at_level("WARNING"):
        plain = ClipRecognizer.load(other / path.name, None, precision="int8", calibration=list)
    assert plain.precision == "fp32" and "using fp32" in caplog.text
    assert not any(p.name.endswith(".int8-" + int8_recipe() + ".onnx") for p in other.iterdir())
