"""int8 ONNX models: onnxruntime static quantization calibrated on real crops, and the check
that the int8 model still agrees with its fp32 original.

One recipe for every image model here (CLIP's image tower, MobileFaceNet):

1. The graph is brought to opset 13 at least (per-channel DequantizeLinear needs its
   ``axis``; MobileFaceNet's file is older), then ``quant_pre_process`` (shape inference
   and graph optimisation); without it the quantizer stops on a Conv whose weight is not
   an initializer in the exported RN50.
2. ``quantize_static`` in QDQ format, weights int8 per output channel, activations
   uint8 (asymmetric), ranges from the calibration blobs (the enrolled people's own
   aligned crops, so the ranges are those of the faces the model will see).

uint8 activations with int8 weights (U8S8) is the pairing onnxruntime's x86 kernels are
fast at: on the development machine's AMD EPYC (AVX-512 VNNI) the RN50 tower ran about
2.5x faster than fp32 with it, while int8 activations (S8S8) ran slower than fp32 (a
trial on the shared machine, not a benchmark: ``kiosk bench quantize`` measures it).
An x86 CPU without VNNI multiplies U8S8 pairs into saturating 16-bit sums; there the
weights are quantized to 7 bits (``reduce_range``), which cannot saturate
(:func:`int8_recipe`).

The quality of int8 cannot be judged on an untrained tower (its features are nearly
identical, any noise swamps them), so :func:`agreement` is measured on a trained
network with real crops: MobileFaceNet always, RN50 wherever RN50.pt exists
(``kiosk bench quantize``).
"""

from __future__ import annotations

import platform
import re
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from models.io import write_bytes_atomic
from models.runtime import create_session

Blob = NDArray[np.float32]
MIN_OPSET = 13  # per-channel QDQ


def _save_at_opset(source: Path, target: Path, opset: int) -> None:
    import onnx
    from onnx import version_converter

    model = onnx.load(str(source))
    current = max(
        (entry.version for entry in model.opset_import if entry.domain in ("", "ai.onnx")),
        default=0,
    )
    if current < opset:
        model = version_converter.convert_version(model, opset)
    onnx.save(model, str(target))


def saturating_cpu(cpuinfo: Path = Path("/proc/cpuinfo")) -> bool:
    """Whether this is an x86 CPU whose int8 kernels may saturate (no VNNI); a CPU whose
    flags cannot be read (not Linux) is assumed to."""
    if platform.machine().lower() not in ("x86_64", "amd64", "i386", "i686", "x86"):
        return False  # ARM's int8 dot products accumulate in 32 bits
    try:
        flags = cpuinfo.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return True
    return re.search(r"\b(avx512_vnni|avx_vnni)\b", flags) is None


def int8_recipe(reduce_range: bool | None = None) -> str:
    """The name of the quantization :func:`quantize_int8` applies on this machine (part
    of a cached int8 file's name, so a file made another way is not taken for it)."""
    return "u8s8-r7" if (saturating_cpu() if reduce_range is None else reduce_range) else "u8s8"


def quantize_int8(
    fp32: Path, out: Path, calibration: Sequence[Blob], *, reduce_range: bool | None = None
) -> Path:
    """``fp32`` quantized to int8 into ``out`` (atomically), calibrated on ``calibration``:
    input blobs of the model (a batch each), e.g. its preprocessed aligned crops.
    ``reduce_range`` (7-bit weights) defaults to :func:`saturating_cpu`."""
    if not calibration:
        raise ValueError("int8 calibration needs at least one blob (an enrolled crop)")
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    input_name = create_session(fp32, device="cpu").get_inputs()[0].name

    class Reader(CalibrationDataReader):
        def __init__(self, blobs: Iterator[Blob]) -> None:
            self._blobs = blobs

        def get_next(self) -> dict[str, Blob] | None:
            blob = next(self._blobs, None)
            if blob is None:
                return None
            return {input_name: np.ascontiguousarray(blob, dtype=np.float32)}

    reader = Reader(iter(calibration))
    with tempfile.TemporaryDirectory(prefix="kiosk-quantize-") as scratch:
        upgraded = Path(scratch) / "opset.onnx"
        prepared = Path(scratch) / "prepared.onnx"
        quantized = Path(scratch) / "int8.onnx"
        _save_at_opset(fp32, upgraded, MIN_OPSET)
        quant_pre_process(str(upgraded), str(prepared), skip_symbolic_shape=True)
        quantize_static(
            str(prepared),
            str(quantized),
            reader,
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            reduce_range=saturating_cpu() if reduce_range is None else reduce_range,
            weight_type=QuantType.QInt8,
            activation_type=QuantType.QUInt8,
            calibrate_method=CalibrationMethod.MinMax,
        )
        write_bytes_atomic(out, quantized.read_bytes())
    return out


@dataclass(frozen=True)
class Agreement:
    """How an int8 model's embeddings compare with its fp32 original's on the same crops."""

    probes: int
    gallery: int
    top1_agreement: float  # probes whose nearest gallery person is the same under both
    top1_fp32: float  # identification accuracy, fp32 (nearest gallery image's person)
    top1_int8: float
    cosine_mean: float  # cosine between a crop's fp32 and int8 embedding
    cosine_min: float

    def as_dict(self) -> dict[str, Any]:
        return {k: round(v, 4) if isinstance(v, float) else v for k, v in asdict(self).items()}


def embed(session_path: Path, blobs: Sequence[Blob], threads: int = 0) -> NDArray[np.float32]:
    """L2-normalised outputs of a one-input model over ``blobs`` (each a batch)."""
    session = create_session(session_path, device="cpu", threads=threads)
    name = session.get_inputs()[0].name
    rows = np.concatenate([session.run(None, {name: blob})[0] for blob in blobs])
    rows = rows.reshape(len(rows), -1).astype(np.float32)
    return rows / np.maximum(np.linalg.norm(rows, axis=1, keepdims=True), 1e-12)


def agreement(
    fp32: NDArray[np.float32],
    int8: NDArray[np.float32],
    labels: Sequence[str],
    gallery: NDArray[np.bool_],
) -> Agreement:
    """Identification with ``gallery`` rows as the gallery and the others as probes, once
    with each model's embeddings (rows in the same order), and the embeddings' cosines."""
    names = np.asarray(labels)
    probes = ~gallery
    if not gallery.any() or not probes.any():
        raise ValueError("agreement needs both gallery and probe rows")

    def nearest(features: NDArray[np.float32]) -> NDArray[np.str_]:
        sims = features[probes] @ features[gallery].T
        return np.asarray(names[gallery][sims.argmax(axis=1)])

    a, b = nearest(fp32), nearest(int8)
    truth = names[probes]
    cosines = np.sum(fp32 * int8, axis=1)
    return Agreement(
        probes=int(probes.sum()),
        gallery=int(gallery.sum()),
        top1_agreement=float(np.mean(a == b)),
        top1_fp32=float(np.mean(a == truth)),
        top1_int8=float(np.mean(b == truth)),
        cosine_mean=float(cosines.mean()),
        cosine_min=float(cosines.min()),
    )
