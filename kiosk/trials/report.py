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

from kiosk.trials.recognizers import UNTRAINED
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
        "recognizer": " ".join(dict.fromkeys(f.recognizer for f in result.frames if f.recognizer)),
    }


def is_untrained(session: TrialSession) -> bool:
    """Whether the session ran on an untrained CLIP tower: its figures mean nothing."""
    return UNTRAINED in session.recognizer


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
    untrained = is_untrained(session)
    return {
        **session.metrics().as_dict(),
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
    export_json_data(path, summary)
    return summary


def export_json_data(path: Path, data: dict[str, Any]) -> None:
    _write_export(path, json.dumps(data, indent=2).encode())


def export_csv(sessions: TrialSession | Sequence[TrialSession], path: Path) -> None:
    """One row per trial of the session (or of each session, in turn)."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS)
    writer.writeheader()
    for session in [sessions] if isinstance(sessions, TrialSession) else sessions:
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


def _session_body(
    session: TrialSession, *, target_fpr: float, level: int = 2, notes: dict[str, Any] | None
) -> str:
    """A session's part of a report: metrics, per participant, plots, the trial log."""
    h = f"h{level}"
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
            trial_row(result)["recognizer"],
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
    recognizer = (
        f"<p>Recognizer: {html.escape(session.recognizer)}.</p>" if session.recognizer else ""
    )
    return f"""{_warning(is_untrained(session))}{recognizer}
<p>Window {session.duration:g} s; reject threshold {session.threshold:g}; a name must hold
at least {session.min_share:.0%} of the frames with a face.</p>
<{h}>Metrics</{h}>{_table(["", ""], _metrics_rows(metrics))}
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
) -> None:
    """A self-contained HTML page: metrics, per-participant results, plots, the trial log
    (and, from a simulation's ``notes``, the clips skipped and the recognizers built)."""
    if is_untrained(session):
        title += f" ({UNTRAINED} CLIP)"
    body = f"<p>{RULES_TEXT}</p>{_notes_html(notes)}" + _session_body(
        session, target_fpr=target_fpr, notes=notes
    )
    _write_export(path, _page(title, body))


def write_comparison_report(
    sessions: Sequence[TrialSession],
    path: Path,
    *,
    title: str = "Deployment trials: recognizers compared",
    target_fpr: float = 0.02,
    notes: dict[str, Any],
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
            _fmt(row["accuracy"]),
            _fmt(row["fpr"]),
            _fmt(row["fnr"]),
            row["ms_per_frame"],
        ]
        for row in notes["comparison"]
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
        + f"<p>{RULES_TEXT}</p>"
        + _notes_html(notes)
        + sections
    )
    _write_export(path, _page(title, body))
