"""The text of the window's status line, from a `FrameResult` alone (no Qt)."""

from __future__ import annotations

from collections.abc import Sequence

from kiosk.live.results import FrameResult

_PROVIDER_NAMES = {
    "CPUExecutionProvider": "CPU",
    "CUDAExecutionProvider": "GPU (CUDA)",
    "TensorrtExecutionProvider": "GPU (TensorRT)",
    "ROCMExecutionProvider": "GPU (ROCm)",
    "MIGraphXExecutionProvider": "GPU (MIGraphX)",
    "DmlExecutionProvider": "GPU (DirectML)",
    "CoreMLExecutionProvider": "CoreML",
    "OpenVINOExecutionProvider": "OpenVINO",
}


def provider_label(providers: Sequence[str]) -> str:
    """The provider that runs the models, in words: the first one a session bound."""
    if not providers:
        return "provider ?"
    first = providers[0]
    return _PROVIDER_NAMES.get(first, first.removesuffix("ExecutionProvider"))


def status_text(result: FrameResult | None) -> str:
    if result is None:
        return "waiting for the first frame"
    # The provider before the stages: a narrow window cuts the line's end, not it.
    parts = [f"{result.fps:.1f} FPS", provider_label(result.providers)]
    parts.append(f"dropped {result.dropped_frames}")
    parts += [f"{stage} {ms:.1f} ms" for stage, ms in result.stage_ms.items()]
    return "  ·  ".join(parts)
