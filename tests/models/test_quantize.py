"""int8 quantization, judged on a trained network with real crops (MobileFaceNet on LFW)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from models.align import align_arcface
from models.io import read_image, scan_people
from models.quantize import agreement, embed, quantize_int8


def _blob(crop: np.ndarray) -> np.ndarray:
    rgb = crop[None, ..., ::-1].astype(np.float32)
    return np.ascontiguousarray(((rgb - 127.5) / 128.0).transpose(0, 3, 1, 2))


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
                blobs.append(_blob(align_arcface(image, faces[0].kps)))
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
