"""Exports of a trial session: CSV, JSON, and an HTML report with embedded plots.

Every file is written atomically (:func:`models.io.atomic_writer`).
"""

from __future__ import annotations

import base64
import csv
import html
import io
import json
import statistics
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from kiosk.trials.rules import (
    RESEARCH_THRESHOLD,
    ConfusionMatrix,
    Metrics,
    ThresholdSweep,
    TrialResult,
    frame_rates,
    per_participant,
    sweep_thresholds,
)
from kiosk.trials.session import TrialSession
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
]


def _write_export(path: Path, data: bytes) -> None:
    """An export written atomically; an unwritable path is a :class:`UserError`."""
    path = Path(path)
    try:
        with atomic_writer(path, permissions=0o644) as stream:  # exports are shared: 0644
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
    }


def session_summary(
    session: TrialSession, *, target_fpr: float = 0.02, frames: bool = True
) -> dict[str, Any]:
    """Everything about a session as plain JSON-able data."""
    sweep = sweep_thresholds(
        session.results,
        current=session.threshold,
        target_fpr=target_fpr,
        min_share=session.min_share,
    )
    trials = []
    for result in session.results:
        row = trial_row(result)
        if frames:
            row["frame_decisions"] = [asdict(frame) for frame in result.frames]
        trials.append(row)
    return {
        **session.metrics().as_dict(),
        "session_id": session.session_id,
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
                "answers": s.answers,
            }
            for s in per_participant(session.results)
        ],
        "confusion_matrix": session.confusion().as_dict(),
        "threshold_sweep": sweep.as_dict(),
        "trial_log": trials,
    }


def _median(values: Sequence[float]) -> float | None:
    return round(statistics.median(values), 3) if values else None


def export_json(
    session: TrialSession, path: Path, *, target_fpr: float = 0.02, **extra: Any
) -> dict[str, Any]:
    summary = {**session_summary(session, target_fpr=target_fpr), **extra}
    _write_export(path, json.dumps(summary, indent=2).encode())
    return summary


def export_csv(session: TrialSession, path: Path) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS)
    writer.writeheader()
    for result in session.results:
        writer.writerow(trial_row(result))
    _write_export(path, buffer.getvalue().encode())


def _values(values: Sequence[float | None]) -> list[float]:
    """None (an undefined rate) as NaN, which matplotlib leaves as a gap."""
    return [float("nan") if value is None else value for value in values]


def _png(figure: Any) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    return base64.b64encode(buffer.getvalue()).decode()


def plot_sweep(sweep: ThresholdSweep) -> str:
    """FPR and FNR against the threshold, with the current, 0.8 and target thresholds."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(6.5, 4))
    axes = figure.add_subplot()
    xs = [p.threshold for p in sweep.points]
    axes.plot(xs, _values([p.metrics.fpr for p in sweep.points]), label="FPR")
    axes.plot(xs, _values([p.metrics.fnr for p in sweep.points]), label="FNR")
    axes.axvline(sweep.current, color="black", linestyle="--", label=f"in use {sweep.current:g}")
    if sweep.current != RESEARCH_THRESHOLD:
        axes.axvline(RESEARCH_THRESHOLD, color="grey", linestyle=":", label="0.8 (research)")
    if sweep.meets_target is not None:
        axes.axvline(
            sweep.meets_target,
            color="green",
            linestyle="-.",
            label=f"FPR <= {sweep.target_fpr:g} from {sweep.meets_target:g}",
        )
    axes.set_xlabel("reject threshold")
    axes.set_ylabel("rate")
    axes.set_ylim(-0.02, 1.02)
    axes.legend(loc="center right", fontsize=8)
    axes.set_title("FPR and FNR against the reject threshold")
    return _png(figure)


def plot_tradeoff(sweep: ThresholdSweep) -> str:
    """FNR against FPR over the sweep (a DET-style curve), the thresholds marked."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(4.5, 4))
    axes = figure.add_subplot()
    points = [p for p in sweep.points if p.metrics.fpr is not None and p.metrics.fnr is not None]
    fprs = _values([p.metrics.fpr for p in points])
    fnrs = _values([p.metrics.fnr for p in points])
    axes.plot(fprs, fnrs, marker=".")
    marks = [(sweep.current, "in use", "black"), (RESEARCH_THRESHOLD, "0.8", "grey")]
    if sweep.meets_target is not None:
        marks.append((sweep.meets_target, f"FPR<={sweep.target_fpr:g}", "green"))
    for threshold, label, colour in marks:
        for p, fpr, fnr in zip(points, fprs, fnrs, strict=True):
            if p.threshold == threshold:
                axes.plot([fpr], [fnr], "o", color=colour, label=f"{label} ({threshold:g})")
    axes.set_xlabel("FPR")
    axes.set_ylabel("FNR")
    axes.set_xlim(-0.02, 1.02)
    axes.set_ylim(-0.02, 1.02)
    axes.legend(loc="upper right", fontsize=8)
    axes.set_title("FNR against FPR")
    return _png(figure)


def plot_confusion(matrix: ConfusionMatrix) -> str:
    from matplotlib.figure import Figure

    size = max(4.0, 0.45 * len(matrix.columns) + 2)
    figure = Figure(figsize=(size, max(3.0, 0.45 * len(matrix.rows) + 1.5)))
    axes = figure.add_subplot()
    axes.imshow(matrix.counts, cmap="Blues")
    axes.set_xticks(range(len(matrix.columns)), matrix.columns, rotation=45, ha="right")
    axes.set_yticks(range(len(matrix.rows)), matrix.rows)
    for (row, column), count in _nonzero(matrix):
        axes.text(column, row, str(count), ha="center", va="center")
    axes.set_xlabel("answer")
    axes.set_ylabel("participant")
    axes.set_title("Confusion matrix (trials)")
    return _png(figure)


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
    return [
        ["trials (N)", metrics.trials],
        ["TP / FP / FN / TN", f"{metrics.tp} / {metrics.fp} / {metrics.fn} / {metrics.tn}"],
        ["no face", metrics.no_face],
        ["misidentified (enrolled, named as someone else)", metrics.misidentified],
        ["attacks refused / accepted", f"{metrics.attack_refused} / {metrics.attack_accepted}"],
        ["accuracy = (TP+TN+refused attacks)/N", _fmt(metrics.accuracy)],
        ["FPR = FP/(FP+TN+refused attacks)", _fmt(metrics.fpr)],
        ["FNR = FN/(FN+TP)", _fmt(metrics.fnr)],
        ["APCER = accepted attacks/attack trials with a face", _fmt(metrics.apcer)],
    ]


def write_html_report(
    session: TrialSession, path: Path, *, title: str = "Deployment trials", target_fpr: float = 0.02
) -> None:
    """A self-contained HTML page: metrics, per-participant results, plots, the trial log."""
    results = session.results
    metrics = session.metrics()
    sweep = sweep_thresholds(
        results, current=session.threshold, target_fpr=target_fpr, min_share=session.min_share
    )
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
            result.source,
        ]
        log_rows.append(
            f"<tr><td>{thumb}</td>"
            + "".join(f"<td>{html.escape(str(c))}</td>" for c in cells)
            + "</tr>"
        )
    target_text = (
        f"the lowest threshold with FPR &le; {target_fpr:g} is {sweep.meets_target:g}"
        if sweep.meets_target is not None
        else f"no threshold reaches FPR &le; {target_fpr:g}"
    )
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
    page = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse;margin:1em 0}}
td,th{{border:1px solid #ccc;padding:3px 8px;text-align:left}}img{{margin:4px}}</style>
</head><body>
<h1>{html.escape(title)}</h1>
<p>Window {session.duration:g} s; reject threshold {session.threshold:g}; a name must hold
at least {session.min_share:.0%} of the frames with a face. Outcomes: enrolled + own name = TP;
enrolled + another name = FP and a misidentification; enrolled + rejected = FN;
not enrolled + rejected = TN; not enrolled + any name = FP; a presentation attack (a photo
of an enrolled person) rejected or found not live = attack_refused, named = FP and an
accepted attack; no face in the window = no_face (counted in N, left out of FPR and FNR).
A frame the liveness check found not live votes "rejected".</p>
<h2>Metrics</h2>{_table(["", ""], _metrics_rows(metrics))}
<h2>Per participant</h2>
{_table(["participant", "kind", "trials", "TP/FP/FN/TN/no face", "answers"], people)}
<h2>Threshold analysis</h2><p>{target_text}.</p>{images}
<h2>Trial log</h2><table><tr><th></th><th>trial</th><th>participant</th><th>kind</th>
<th>answer</th><th>outcome</th><th>face frames</th><th>source</th></tr>{"".join(log_rows)}</table>
</body></html>
"""
    _write_export(path, page.encode())
