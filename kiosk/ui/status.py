"""The text of the operator view's status lines, from a `FrameResult` alone (no Qt).

Two lines: the rate, the provider in use, dropped frames, the recognizer, its version and
age ("clip v7, trained 4 min ago") with what is being done about it ("retraining: about
20 s left"), and any notice of the result ("nobody is enrolled"); then the per-stage
latency. The label shrinks its font until both fit (kiosk/ui/fit_text.py), so neither is
cut at the window's edge."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

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


def age_text(trained_at: str, now: datetime | None = None) -> str:
    """``trained 4 min ago`` from an ISO 8601 time; "" when the time is absent or unreadable."""
    try:
        trained = datetime.fromisoformat(trained_at)
    except ValueError:
        return ""
    if trained.tzinfo is None:
        trained = trained.replace(tzinfo=UTC)
    seconds = max(0.0, ((now or datetime.now(UTC)) - trained).total_seconds())
    for unit, size in (("day", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            count = int(seconds // size)
            plural = "s" if unit == "day" and count != 1 else ""
            return f"trained {count} {unit}{plural} ago"
    return f"trained {int(seconds)} s ago"


WAITING = "waiting for the first frame"


def status_text(
    result: FrameResult | None, now: datetime | None = None, *, notice: str = ""
) -> str:
    """The status lines; before the first result, the source's own word (``notice``:
    "Starting… loading the models", or why the kiosk cannot start) when it has one."""
    if result is None:
        return _two_lines(notice) if notice else WAITING
    summary = [f"{result.fps:.1f} FPS", provider_label(result.providers)]
    summary.append(f"dropped {result.dropped_frames}")
    recognizer = result.recognizer
    if recognizer.kind:  # "clip v7, trained 4 min ago"; with nobody enrolled the notice says so
        age = age_text(recognizer.trained_at, now)
        summary.append(f"{recognizer.label}, {age}" if age else recognizer.label)
    if recognizer.update:  # "retraining: about 20 s left"
        summary.append(recognizer.update)
    if result.notice:
        summary.append(result.notice)
    stages = " · ".join(f"{stage} {ms:.1f}" for stage, ms in result.stage_ms.items())
    return " · ".join(summary) + "\n" + (f"ms: {stages}" if stages else "no stage timings")


def _two_lines(text: str) -> str:
    """A long line broken at the space nearest its middle: the label has two lines, and
    one long line would shrink its font unreadably (or be elided)."""
    if len(text) < 60 or "\n" in text:
        return text
    middle = len(text) // 2
    spaces = [i for i, char in enumerate(text) if char == " "]
    if not spaces:
        return text
    cut = min(spaces, key=lambda i: abs(i - middle))
    return text[:cut] + "\n" + text[cut + 1 :]
