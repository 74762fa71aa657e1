"""Exports of a trial session: CSV, JSON, and an HTML report with embedded plots.

Every file is written atomically (:func:`models.io.atomic_writer`), the owner's alone
(0600: it names the people tried), and recorded first by its ``recorder`` when given
(kiosk/trials/exports.py: what an erasure needs to reach it).
"""

from __future__ import annotations

import base64
import contextlib
import csv
import html
import io
import json
import math
import statistics
import time
from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, Protocol

from kiosk.trials.recognizers import UNTRAINED
from kiosk.trials.rules import (
    RESEARCH_THRESHOLD,
    ConfusionMatrix,
    Metrics,
    Outcome,
    ThresholdSweep,
    TrialResult,
    frame_rates,
    per_participant,
    sweep_thresholds,
)
from kiosk.trials.session import TrialSession
from models.clip.identity import UNTRAINED_WARNING
from models.errors import UserError
from models.io import atomic_writer

CSV_COLUMNS = [
    "trial_id",
    "participant",
    "enrolled",
    "kind",
    "started_at",
    "duration",
    "frames",
    "face_frames",
    "answer",
    "outcome",
    "misidentified",
    "attack_accepted",
    "live_frames",
    "not_live_frames",
    "time_to_name",
    "source",
    "recognizer",
]
CSV_SESSION_COLUMNS = ["session", "session_date", "site", "kiosk", "operator"]


Z95 = 1.959963984540054  # the standard normal's 97.5th percentile: a two-sided 95% interval

MIN_TRIALS_PER_CLASS = 10  # trials with a face of enrolled people, and of strangers, to recommend


def wilson_interval(successes: int, n: int, z: float = Z95) -> tuple[float, float] | None:
    """The Wilson score interval of ``successes`` out of ``n`` (95% by default); None
    when ``n`` is 0. Unlike the normal approximation it stays inside [0, 1] and is not
    zero-width at 0 or n successes: 0 of 2 is 0% to 66%."""
    if n <= 0:
        return None
    if not 0 <= successes <= n:
        raise ValueError(f"{successes} successes out of {n}")
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    low = 0.0 if successes == 0 else max(0.0, centre - half)  # exact at the ends
    high = 1.0 if successes == n else min(1.0, centre + half)
    return low, high


def rate_interval(k: int, n: int) -> dict[str, Any] | None:
    """``k`` of ``n`` with its Wilson 95% interval, ``{"k": 1, "n": 3, "low": .., "high":
    ..}``; None when ``n`` is 0 (the rate is undefined)."""
    interval = wilson_interval(k, n)
    if interval is None:
        return None
    return {"k": k, "n": n, "low": round(interval[0], 4), "high": round(interval[1], 4)}


def rate_intervals(metrics: Metrics) -> dict[str, dict[str, Any] | None]:
    """Each of the metrics' rates (accuracy, FPR, FNR, APCER) as :func:`rate_interval`."""
    return {name: rate_interval(k, n) for name, (k, n) in metrics.fractions.items()}


def format_rate(interval: dict[str, Any] | None) -> str:
    """``33.3% (1/3; 95% CI 6.2-79.2%)``, or ``n/a`` for an undefined rate."""
    if interval is None:
        return "n/a"
    k, n = interval["k"], interval["n"]
    return (
        f"{100 * k / n:.1f}% ({k}/{n}; 95% CI {100 * interval['low']:.1f}"
        f"-{100 * interval['high']:.1f}%)"
    )


@dataclass(frozen=True)
class Recommendation:
    """The threshold the analysis recommends (the lowest meeting the target FPR), or why
    it recommends none: fewer than ``min_per_class`` trials with a face of enrolled people
    or of strangers (people not enrolled; attacks are counted apart)."""

    threshold: float | None
    enrolled: int
    strangers: int
    min_per_class: int
    target_fpr: float
    reason: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def recommend(
    results: Sequence[TrialResult],
    sweep: ThresholdSweep,
    min_per_class: int = MIN_TRIALS_PER_CLASS,
) -> Recommendation:
    faced = [r for r in results if r.outcome is not Outcome.NO_FACE]
    enrolled = sum(r.participant.enrolled for r in faced)
    strangers = sum(not r.participant.enrolled and not r.participant.attack for r in faced)
    target = sweep.target_fpr
    if enrolled < min_per_class or strangers < min_per_class:
        reason = (
            f"not enough trials to recommend a threshold: {enrolled} enrolled,"
            f" {strangers} strangers; need {min_per_class} of each"
        )
        return Recommendation(None, enrolled, strangers, min_per_class, target, reason)
    if sweep.meets_target is None:
        reason = f"no threshold reaches FPR <= {target:g}"
    else:
        reason = f"the lowest threshold with FPR <= {target:g} is {sweep.meets_target:g}"
    return Recommendation(sweep.meets_target, enrolled, strangers, min_per_class, target, reason)


def _analysis(
    session: TrialSession, target_fpr: float, min_per_class: int
) -> tuple[ThresholdSweep, Recommendation]:
    """The threshold sweep, with its target threshold withheld (``meets_target`` None)
    when there are too few trials to recommend it, and the recommendation."""
    sweep = sweep_thresholds(
        session.results,
        current=session.threshold,
        target_fpr=target_fpr,
        min_share=session.min_share,
    )
    advice = recommend(session.results, sweep, min_per_class)
    return (sweep if advice.threshold is not None else replace(sweep, meets_target=None)), advice


def local_time(epoch: float | None) -> str:
    """``2026-12-02 14:05:09 CET``: a wall-clock time in the machine's time zone."""
    if epoch is None:
        return ""
    return time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(epoch))


@dataclass(frozen=True)
class ReportHeader:
    """Where, when, by whom and with what a session's trials were run, for the top of a
    report: from the session's record in the trials store (site, kiosk and operator are
    "" in sessions recorded before they were kept) and its frames' recognizer labels
    (``clip v3``: the recognizer and its bundle version)."""

    session_id: int | None = None
    label: str = ""
    created_at: float | None = None
    site: str = ""
    kiosk: str = ""
    operator: str = ""
    recognizer: str = ""
    versions: list[str] = field(default_factory=list)

    @property
    def date(self) -> str:
        return local_time(self.created_at)

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "date": self.date}

    def rows(self) -> list[list[object]]:
        unknown = "(not recorded)"
        session = "" if self.session_id is None else str(self.session_id)
        return [
            ["site", self.site or "(none: a single kiosk)"],
            ["kiosk", self.kiosk or unknown],
            ["session", f"{session} {self.label}".strip() or unknown],
            ["date", self.date or unknown],
            ["operator", self.operator or unknown],
            ["recognizer", self.recognizer or unknown],
            ["bundle version", ", ".join(self.versions) or unknown],
        ]


def report_header(session: TrialSession, **given: Any) -> ReportHeader:
    """The session's header, from its store's record; ``given`` fields override it."""
    info = None
    if session.store is not None and session.session_id is not None:
        info = session.store.session_info(session.session_id)
    versions = list(
        dict.fromkeys(f.recognizer for r in session.results for f in r.frames if f.recognizer)
    )
    found: dict[str, Any] = {
        "session_id": session.session_id,
        "recognizer": session.recognizer,
        "versions": versions,
    }
    if info is not None:
        found |= {
            "label": info.label,
            "created_at": info.created_at,
            "site": info.site,
            "kiosk": info.kiosk,
            "operator": info.operator,
        }
    return ReportHeader(**(found | given))


ReportKind = Literal["json", "csv", "html"]


class ReportRecorder(Protocol):
    """Records a report file before it is written (kiosk/trials/exports.py ReportLog)."""

    def writing(self, path: Path, kind: ReportKind, data: bytes) -> AbstractContextManager[None]:
        """Entered before ``data`` is written to ``path``, left once it is there."""
        ...


def _write_export(
    path: Path, data: bytes, kind: ReportKind, recorder: ReportRecorder | None
) -> None:
    """An export written atomically, 0600 (it names people: the owner's alone), recorded
    first by ``recorder``; an unwritable path is a :class:`UserError`."""
    path = Path(path)
    recording = recorder.writing(path, kind, data) if recorder else contextlib.nullcontext()
    try:
        with recording, atomic_writer(path) as stream:  # mkstemp's 0600
            stream.write(data)
    except OSError as error:
        raise UserError(f"cannot write {path}: {error}") from error


def trial_row(result: TrialResult) -> dict[str, Any]:
    return {
        "trial_id": result.trial_id,
        "participant": result.participant.name,
        "enrolled": result.participant.enrolled,
        "kind": result.participant.kind,
        "started_at": round(result.started_at, 3),
        "duration": result.duration,
        "frames": len(result.frames),
        "face_frames": result.face_frames,
        "answer": result.answer_label,
        "outcome": result.outcome.value,
        "misidentified": result.misidentified,
        "attack_accepted": result.attack_accepted,
        "live_frames": result.live_frames[0],
        "not_live_frames": result.live_frames[1],
        "time_to_name": None if result.time_to_name is None else round(result.time_to_name, 3),
        "source": result.source,
        "recognizer": " ".join(dict.fromkeys(f.recognizer for f in result.frames if f.recognizer)),
    }


def is_untrained(session: TrialSession) -> bool:
    """Whether the session ran on an untrained CLIP tower: its figures mean nothing."""
    return UNTRAINED in session.recognizer


def session_summary(
    session: TrialSession,
    *,
    target_fpr: float = 0.02,
    frames: bool = True,
    header: ReportHeader | None = None,
    min_per_class: int = MIN_TRIALS_PER_CLASS,
) -> dict[str, Any]:
    """Everything about a session as plain JSON-able data: its header, the metrics with
    their Wilson 95% intervals (``ci95``), the threshold analysis and its recommendation
    (none below ``min_per_class`` trials of each class), the trial log."""
    sweep, advice = _analysis(session, target_fpr, min_per_class)
    metrics = session.metrics()
    trials = []
    for result in session.results:
        row = trial_row(result)
        if frames:
            row["frame_decisions"] = [asdict(frame) for frame in result.frames]
        trials.append(row)
    untrained = is_untrained(session)
    return {
        "header": (header or report_header(session)).as_dict(),
        **metrics.as_dict(),
        "ci95": rate_intervals(metrics),
        "session_id": session.session_id,
        "description": session.recognizer,
        "untrained": untrained,
        **({"warning": UNTRAINED_WARNING} if untrained else {}),
        "duration": session.duration,
        "threshold": session.threshold,
        "min_share": session.min_share,
        "frame_level": frame_rates(session.results),
        "median_time_to_name": _median(
            [r.time_to_name for r in session.results if r.time_to_name is not None]
        ),
        "participants": [
            {
                "name": s.participant.name,
                "enrolled": s.participant.enrolled,
                "kind": s.participant.kind,
                **s.metrics.as_dict(),
                "ci95": rate_intervals(s.metrics),
                "answers": s.answers,
            }
            for s in per_participant(session.results)
        ],
        "confusion_matrix": session.confusion().as_dict(),
        "threshold_sweep": sweep.as_dict(),
        "recommendation": advice.as_dict(),
        "trial_log": trials,
    }


def _median(values: Sequence[float]) -> float | None:
    return round(statistics.median(values), 3) if values else None


def export_json(
    session: TrialSession,
    path: Path,
    *,
    target_fpr: float = 0.02,
    header: ReportHeader | None = None,
    recorder: ReportRecorder | None = None,
    **extra: Any,
) -> dict[str, Any]:
    summary = {**session_summary(session, target_fpr=target_fpr, header=header), **extra}
    export_json_data(path, summary, recorder=recorder)
    return summary


def export_json_data(
    path: Path, data: dict[str, Any], *, recorder: ReportRecorder | None = None
) -> None:
    _write_export(path, json.dumps(data, indent=2).encode(), "json", recorder)


def export_csv(
    sessions: TrialSession | Sequence[TrialSession],
    path: Path,
    *,
    header: ReportHeader | None = None,
    recorder: ReportRecorder | None = None,
) -> None:
    """One row per trial of the session (or of each session, in turn), each naming its
    session, the session's date (local time), site, kiosk and operator (``header``
    overrides the store's record of a single session)."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS + CSV_SESSION_COLUMNS)
    writer.writeheader()
    batch = [sessions] if isinstance(sessions, TrialSession) else list(sessions)
    for session in batch:
        about = header if header is not None and len(batch) == 1 else report_header(session)
        where = {
            "session": "" if about.session_id is None else about.session_id,
            "session_date": about.date,
            "site": about.site,
            "kiosk": about.kiosk,
            "operator": about.operator,
        }
        for result in session.results:
            writer.writerow(trial_row(result) | where)
    _write_export(path, buffer.getvalue().encode(), "csv", recorder)


def _values(values: Sequence[float | None]) -> list[float]:
    """None (an undefined rate) as NaN, which matplotlib leaves as a gap."""
    return [float("nan") if value is None else value for value in values]


def _png(figure: Any) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    return base64.b64encode(buffer.getvalue()).decode()


def _band(sweep: ThresholdSweep, rate: str) -> tuple[list[float], list[float]]:
    """The Wilson 95% band of a rate along the sweep (NaN where it is undefined)."""
    low, high = [], []
    for point in sweep.points:
        interval = rate_intervals(point.metrics)[rate]
        low.append(float("nan") if interval is None else interval["low"])
        high.append(float("nan") if interval is None else interval["high"])
    return low, high


def _legend(axes: Any) -> None:
    """A legend below the plot, where it hides no curve; only when something is labelled
    (else matplotlib warns "No artists with labels found to put in legend")."""
    if axes.get_legend_handles_labels()[0]:
        axes.legend(loc="upper center", bbox_to_anchor=(0.5, -0.15), ncol=2, fontsize=8)


def _marks(sweep: ThresholdSweep) -> list[tuple[float, str, str]]:
    """The thresholds a plot marks, each once: (threshold, what it is, colour). The one
    in use is also named as the research default when it is 0.8."""
    research = "research default"
    in_use = "in use" + (f" = {research}" if sweep.current == RESEARCH_THRESHOLD else "")
    marks = [(sweep.current, in_use, "black")]
    if sweep.current != RESEARCH_THRESHOLD:
        marks.append((RESEARCH_THRESHOLD, research, "grey"))
    if sweep.meets_target is not None:
        target = f"lowest with FPR <= {sweep.target_fpr:g}"
        if sweep.meets_target in (sweep.current, RESEARCH_THRESHOLD):
            index = 0 if sweep.meets_target == sweep.current else 1
            threshold, label, _ = marks[index]
            marks[index] = (threshold, f"{label} = {target}", "green")
        else:
            marks.append((sweep.meets_target, target, "green"))
    return marks


def sweep_figure(sweep: ThresholdSweep) -> Any:
    """FPR and FNR against the threshold, their Wilson 95% bands shaded, with the
    current, 0.8 and target thresholds."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(6.5, 4))
    axes = figure.add_subplot()
    xs = [p.threshold for p in sweep.points]
    for rate, name, who in (("fpr", "FPR", "strangers"), ("fnr", "FNR", "enrolled people")):
        values = _values([getattr(p.metrics, rate) for p in sweep.points])
        defined = any(not math.isnan(v) for v in values)
        label = f"{name} (95% band)" if defined else f"{name}: undefined, no trials of {who}"
        (line,) = axes.plot(xs, values, label=label)
        if defined:
            low, high = _band(sweep, rate)
            axes.fill_between(xs, low, high, color=line.get_color(), alpha=0.15, linewidth=0)
    styles = {"black": "--", "grey": ":", "green": "-."}
    for threshold, label, colour in _marks(sweep):
        axes.axvline(
            threshold, color=colour, linestyle=styles[colour], label=f"{label}: {threshold:g}"
        )
    axes.set_xlabel("reject threshold")
    axes.set_ylabel("rate")
    axes.set_ylim(-0.02, 1.02)
    _legend(axes)
    axes.set_title("FPR and FNR against the reject threshold")
    return figure


def plot_sweep(sweep: ThresholdSweep) -> str:
    return _png(sweep_figure(sweep))


def tradeoff_figure(sweep: ThresholdSweep) -> Any:
    """FNR against FPR over the sweep (a DET-style curve), the thresholds marked. Marks
    that fall on the same point are drawn as concentric rings of falling size, and the
    point is annotated with each of their thresholds, so none hides another."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(4.5, 4))
    axes = figure.add_subplot()
    points = [p for p in sweep.points if p.metrics.fpr is not None and p.metrics.fnr is not None]
    axes.plot(
        _values([p.metrics.fpr for p in points]),
        _values([p.metrics.fnr for p in points]),
        marker=".",
        color="tab:blue",
        label="thresholds swept" if points else None,
    )
    at: dict[tuple[float, float], list[tuple[float, str, str]]] = {}
    for threshold, label, colour in _marks(sweep):
        point = next((p for p in points if p.threshold == threshold), None)
        if point is None:
            continue  # FPR or FNR undefined there
        assert point.metrics.fpr is not None and point.metrics.fnr is not None
        at.setdefault((point.metrics.fpr, point.metrics.fnr), []).append((threshold, label, colour))
    for (fpr, fnr), marks in at.items():
        for order, (threshold, label, colour) in enumerate(marks):
            axes.plot(
                [fpr],
                [fnr],
                "o",
                markersize=14 - 4 * order,
                markerfacecolor="none",
                markeredgecolor=colour,
                markeredgewidth=2,
                label=f"{label}: {threshold:g}",
            )
        # Text beside the point, pushed inwards near an edge, one line per threshold.
        text = "\n".join(f"{threshold:g}" for threshold, _, _ in marks)
        axes.annotate(
            text,
            (fpr, fnr),
            xytext=(10 if fpr < 0.7 else -10, 10 if fnr < 0.7 else -10),
            textcoords="offset points",
            ha="left" if fpr < 0.7 else "right",
            va="bottom" if fnr < 0.7 else "top",
            fontsize=8,
        )
    if not points:
        axes.text(
            0.5,
            0.5,
            "FPR or FNR undefined:\nneeds trials of enrolled people and of strangers",
            ha="center",
            va="center",
            transform=axes.transAxes,
        )
    axes.set_xlabel("FPR")
    axes.set_ylabel("FNR")
    axes.set_xlim(-0.05, 1.05)
    axes.set_ylim(-0.05, 1.05)
    _legend(axes)
    axes.set_title("FNR against FPR")
    return figure


def plot_tradeoff(sweep: ThresholdSweep) -> str:
    return _png(tradeoff_figure(sweep))


def text_colour(rgb: Sequence[float]) -> str:
    """Black or white, whichever reads better on a cell of colour ``rgb`` (0-1 sRGB):
    white on a dark cell, by its relative luminance (WCAG's weights)."""

    def linear(c: float) -> float:
        return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b = (linear(float(c)) for c in rgb[:3])
    luminance = 0.2126 * r + 0.7152 * g + 0.0722 * b
    # The luminance where black and white text have the same contrast ratio.
    return "white" if luminance < 0.179 else "black"


def confusion_figure(matrix: ConfusionMatrix) -> Any:
    """The confusion matrix, each count in black or white by its cell's brightness."""
    from matplotlib import colormaps
    from matplotlib.figure import Figure

    size = max(4.0, 0.45 * len(matrix.columns) + 2)
    figure = Figure(figsize=(size, max(3.0, 0.45 * len(matrix.rows) + 1.5)))
    axes = figure.add_subplot()
    cmap = colormaps["Blues"]
    most = max(1, int(matrix.counts.max()))
    axes.imshow(matrix.counts, cmap=cmap, vmin=0, vmax=most)
    axes.set_xticks(range(len(matrix.columns)), matrix.columns, rotation=45, ha="right")
    axes.set_yticks(range(len(matrix.rows)), matrix.rows)
    for (row, column), count in _nonzero(matrix):
        colour = text_colour(tuple(cmap(count / most)))
        axes.text(column, row, str(count), ha="center", va="center", color=colour)
    axes.set_xlabel("answer")
    axes.set_ylabel("participant")
    axes.set_title("Confusion matrix (trials)")
    return figure


def plot_confusion(matrix: ConfusionMatrix) -> str:
    return _png(confusion_figure(matrix))


def _nonzero(matrix: ConfusionMatrix) -> list[tuple[tuple[int, int], int]]:
    return [
        ((row, column), int(matrix.counts[row, column]))
        for row in range(len(matrix.rows))
        for column in range(len(matrix.columns))
        if matrix.counts[row, column]
    ]


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"


def _table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(cell))}</td>" for cell in row) + "</tr>"
        for row in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def _metrics_rows(metrics: Metrics) -> list[list[object]]:
    ci = rate_intervals(metrics)
    return [
        ["trials (N)", metrics.trials],
        ["TP / FP / FN / TN", f"{metrics.tp} / {metrics.fp} / {metrics.fn} / {metrics.tn}"],
        ["no face", metrics.no_face],
        ["misidentified (enrolled, named as someone else)", metrics.misidentified],
        ["attacks refused / accepted", f"{metrics.attack_refused} / {metrics.attack_accepted}"],
        ["accuracy = (TP+TN+refused attacks)/N", format_rate(ci["accuracy"])],
        ["FPR = FP/(FP+TN+refused attacks)", format_rate(ci["fpr"])],
        ["FNR = FN/(FN+TP)", format_rate(ci["fnr"])],
        ["APCER = accepted attacks/attack trials with a face", format_rate(ci["apcer"])],
    ]


CI_TEXT = """Each rate is shown with its count and its Wilson 95% confidence interval: with
few trials the interval is wide, and the rate alone says little."""


STYLE = """body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;margin:1em 0}
td,th{border:1px solid #ccc;padding:3px 8px;text-align:left}img{margin:4px}
.warning{background:#fdd;border:2px solid #c00;padding:1em;font-weight:bold}"""

RULES_TEXT = """Outcomes: enrolled + own name = TP;
enrolled + another name = FP and a misidentification; enrolled + rejected = FN;
not enrolled + rejected = TN; not enrolled + any name = FP; a presentation attack (a photo
of an enrolled person) rejected or found not live = attack_refused, named = FP and an
accepted attack; no face in the window = no_face (counted in N, left out of FPR and FNR).
A frame the liveness check found not live votes "rejected"."""


def _page(title: str, body: str) -> bytes:
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>{STYLE}</style>
</head><body>
<h1>{html.escape(title)}</h1>
{body}
</body></html>
""".encode()


def _warning(untrained: bool) -> str:
    return f'<p class="warning">{html.escape(UNTRAINED_WARNING)}</p>' if untrained else ""


def _notes_html(notes: dict[str, Any] | None) -> str:
    """What a simulation adds: the clips it skipped (and why), the recognizers it built."""
    if not notes:
        return ""
    parts = []
    skipped = notes.get("skipped_clips") or []
    if skipped:
        rows = [
            [
                item["name"],
                item["frames"],
                item["blocked_by"] or "",
                ", ".join(f"{gate} {count}" for gate, count in item["gates"].items()),
            ]
            for item in skipped
        ]
        parts.append(
            "<h2>Clips skipped: no enrollment photo</h2><p>No frame of their first"
            f" {skipped[0]['enroll_seconds']:g} s passed the enrollment capture's gates;"
            " they take no part in the trials.</p>"
            + _table(["clip", "frames", "gate that blocked most", "frames refused per gate"], rows)
        )
    return "".join(parts)


def _bundles_html(notes: dict[str, Any] | None) -> str:
    builds = (notes or {}).get("bundles") or []
    if not builds:
        return ""
    rows = [
        [
            b["label"],
            b["held_out"] or "(everyone)",
            len(b.get("people", [])),
            sum(b.get("photos", {}).values()),
            ", ".join(f"{s['path']}: {s['reason']}" for s in b.get("skipped", [])),
            _fmt(b.get("test_accuracy")) if "test_accuracy" in b else "",
            b.get("build_s", ""),
        ]
        for b in builds
    ]
    held = (notes or {}).get("held_out_skipped") or []
    extra = "".join(
        f"<p>No run without {html.escape(h['held_out'])}: {html.escape(h['reason'])}</p>"
        for h in held
    )
    return (
        "<h3>Recognizers built</h3>"
        + _table(
            ["label", "held out", "people", "photos", "left out", "held-out accuracy", "build s"],
            rows,
        )
        + extra
    )


def _header_html(header: ReportHeader) -> str:
    return f'<div class="header">{_table(["", ""], header.rows())}</div>'


def _session_body(
    session: TrialSession,
    *,
    target_fpr: float,
    level: int = 2,
    notes: dict[str, Any] | None,
    header: ReportHeader | Literal[False] | None = None,
    min_per_class: int = MIN_TRIALS_PER_CLASS,
) -> str:
    """A session's part of a report: header (False: none, the page has it), metrics, per
    participant, plots, the log."""
    h = f"h{level}"
    results = session.results
    metrics = session.metrics()
    sweep, advice = _analysis(session, target_fpr, min_per_class)
    people = [
        [
            s.participant.name,
            s.participant.kind,
            s.metrics.trials,
            f"{s.metrics.tp}/{s.metrics.fp}/{s.metrics.fn}/{s.metrics.tn}/{s.metrics.no_face}",
            ", ".join(f"{a}: {n}" for a, n in sorted(s.answers.items())),
        ]
        for s in per_participant(results)
    ]
    log_rows = []
    for result in results:
        thumb = ""
        if result.thumbnail:
            data = base64.b64encode(result.thumbnail).decode()
            thumb = f'<img src="data:image/jpeg;base64,{data}" width="48" height="48">'
        cells = [
            result.trial_id if result.trial_id is not None else "",
            result.participant.name,
            result.participant.kind,
            result.answer_label,
            result.outcome.value,
            f"{result.face_frames}/{len(result.frames)}",
            trial_row(result)["recognizer"],
            result.source,
        ]
        log_rows.append(
            f"<tr><td>{thumb}</td>"
            + "".join(f"<td>{html.escape(str(c))}</td>" for c in cells)
            + "</tr>"
        )
    target_text = html.escape(advice.reason).replace("&lt;=", "&le;")
    try:
        import matplotlib  # noqa: F401  (the door bundle leaves it out)
    except ImportError:
        images = "<p>Plots need matplotlib, which this installation lacks.</p>"
    else:
        images = "".join(
            f'<img src="data:image/png;base64,{png}">'
            for png in (
                plot_sweep(sweep),
                plot_tradeoff(sweep),
                plot_confusion(session.confusion()),
            )
        )
    top = "" if header is False else _header_html(header or report_header(session))
    return f"""{top}{_warning(is_untrained(session))}
<p>Window {session.duration:g} s; reject threshold {session.threshold:g}; a name must hold
at least {session.min_share:.0%} of the frames with a face.</p>
<{h}>Metrics</{h}><p>{CI_TEXT}</p>{_table(["", ""], _metrics_rows(metrics))}
{_bundles_html(notes)}
<{h}>Per participant</{h}>
{_table(["participant", "kind", "trials", "TP/FP/FN/TN/no face", "answers"], people)}
<{h}>Threshold analysis</{h}><p>{target_text}.</p>{images}
<{h}>Trial log</{h}><table><tr><th></th><th>trial</th><th>participant</th><th>kind</th>
<th>answer</th><th>outcome</th><th>face frames</th><th>recognizer</th><th>source</th></tr>
{"".join(log_rows)}</table>"""


def write_html_report(
    session: TrialSession,
    path: Path,
    *,
    title: str = "Deployment trials",
    target_fpr: float = 0.02,
    notes: dict[str, Any] | None = None,
    header: ReportHeader | None = None,
    min_per_class: int = MIN_TRIALS_PER_CLASS,
    recorder: ReportRecorder | None = None,
) -> None:
    """A self-contained HTML page: the header (site, kiosk, session, date, operator,
    recognizer), metrics with their intervals, per-participant results, plots, the trial
    log (and, from a simulation's ``notes``, the clips skipped and the recognizers built)."""
    if is_untrained(session):
        title += f" ({UNTRAINED} CLIP)"
    top = _header_html(header or report_header(session))
    body = f"{top}<p>{RULES_TEXT}</p>{_notes_html(notes)}" + _session_body(
        session,
        target_fpr=target_fpr,
        notes=notes,
        header=False,
        min_per_class=min_per_class,
    )
    _write_export(path, _page(title, body), "html", recorder)


def write_comparison_report(
    sessions: Sequence[TrialSession],
    path: Path,
    *,
    title: str = "Deployment trials: recognizers compared",
    target_fpr: float = 0.02,
    notes: dict[str, Any],
    recorder: ReportRecorder | None = None,
) -> None:
    """One page comparing recognizers run over the same trials: a table of their figures,
    then each one's full report. ``notes`` is the simulation's summary (``comparison``,
    ``runs`` by recognizer, ``skipped_clips``)."""
    rows = [
        [
            row["label"],
            row["description"],
            row["trials"],
            f"{row['tp']} / {row['fp']} ({row['misidentified']}) / {row['fn']} / {row['tn']}",
            row["no_face"],
            *(
                format_rate(rate_intervals(session.metrics())[k])
                for k in ("accuracy", "fpr", "fnr")
            ),
            row["ms_per_frame"],
        ]
        for row, session in zip(notes["comparison"], sessions, strict=True)
    ]
    header = ["recognizer", "what", "trials", "TP / FP (misid.) / FN / TN", "no face"]
    header += ["accuracy", "FPR", "FNR", "ms a frame"]
    runs = notes["runs"]
    sections = "".join(
        f"<h2>{html.escape(str(row['label']))}: {html.escape(str(row['description']))}</h2>"
        + _session_body(session, target_fpr=target_fpr, level=3, notes=runs[row["recognizer"]])
        for row, session in zip(notes["comparison"], sessions, strict=True)
    )
    untrained = any(is_untrained(session) for session in sessions)
    if untrained:
        title += f" ({UNTRAINED} CLIP)"
    body = (
        _warning(untrained)
        + "<p>Every recognizer saw the same frames of the same clips, enrolled from the same"
        " photos; detection and liveness ran once for all. The first recognizer's time a"
        " frame includes detection and liveness.</p>"
        + _table(header, rows)
        + f"<p>{CI_TEXT}</p><p>{RULES_TEXT}</p>"
        + _notes_html(notes)
        + sections
    )
    _write_export(path, _page(title, body), "html", recorder)
