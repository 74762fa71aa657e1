"""What `kiosk trials` does, free of argparse: the trials database, the enrolled roster,
the console's pipeline and session, the offline simulation over clips, and the exports
of a session (JSON, CSV, HTML) with its summary."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kiosk import build
from kiosk.config import KioskConfig
from models import registry
from models.errors import UserError
from models.paths import user_data_dir

if TYPE_CHECKING:
    from kiosk.live.pipeline import LivePipeline
    from kiosk.trials.session import TrialSession
    from kiosk.trials.simulation import Clip
    from kiosk.trials.store import SessionInfo


def default_database(config: KioskConfig) -> Path:
    if config.trials.database is not None:
        return config.trials.database
    return user_data_dir() / "trials.sqlite"


def existing_database(config: KioskConfig, path: Path | None) -> Path:
    """``path``, else the config's database; it must exist."""
    path = path if path is not None else default_database(config)
    if not path.exists():
        raise UserError(f"no trials database at {path}")
    return path


def enrolled_roster(config: KioskConfig) -> list[str]:
    """The names of the people in the store who have enrollment photos."""
    from enroll.store import open_store

    with open_store(config.enroll) as people:
        return [person.name for person in people.people() if person.photo_count > 0]


def trials_pipeline(config: KioskConfig, source: str | None) -> LivePipeline:
    """The live pipeline for trials: ``kiosk run``'s, classifying every frame of a track
    (``reclassify_every = 1``) so each frame of a trial carries a fresh prediction."""

    live = config.kiosk.model_copy(update={"reclassify_every": 1})
    return build.live_pipeline(config.model_copy(update={"kiosk": live}), source=source)


@dataclass(frozen=True)
class Outputs:
    """What to write of a session; ``target_fpr`` None means the config's."""

    json: Path | None = None
    csv: Path | None = None
    report: Path | None = None
    target_fpr: float | None = None

    @property
    def any(self) -> bool:
        return any(path is not None for path in (self.json, self.csv, self.report))


def write_outputs(
    outputs: Outputs, config: KioskConfig, session: TrialSession, extra: dict[str, object]
) -> dict[str, object]:
    """Write the asked-for exports; the session's summary (with ``extra``)."""
    from kiosk.trials.report import export_csv, export_json, session_summary, write_html_report

    target = outputs.target_fpr if outputs.target_fpr is not None else config.trials.target_fpr
    if outputs.json is not None:
        summary = export_json(session, outputs.json, target_fpr=target, **extra)
    else:
        summary = {**session_summary(session, target_fpr=target, frames=False), **extra}
    if outputs.csv is not None:
        export_csv(session, outputs.csv)
    if outputs.report is not None:
        write_html_report(session, outputs.report, target_fpr=target)
    return summary


def summary_lines(summary: dict[str, Any]) -> list[str]:
    """A session's summary for a terminal: outcomes, rates, attacks, liveness."""

    def pct(value: object) -> str:
        return "n/a" if value is None else f"{100 * float(value):.1f}%"  # type: ignore[arg-type]

    lines = [
        f"trials {summary['trials']}: TP {summary['tp']}  FP {summary['fp']}"
        f" (misidentified {summary['misidentified']})  FN {summary['fn']}  TN {summary['tn']}"
        f"  no face {summary['no_face']}",
        f"accuracy {pct(summary['accuracy'])}  FPR {pct(summary['fpr'])}"
        f"  FNR {pct(summary['fnr'])}",
    ]
    if summary["attack_refused"] or summary["attack_accepted"]:
        lines.append(
            f"attacks refused {summary['attack_refused']}  accepted {summary['attack_accepted']}"
            f"  APCER {pct(summary['apcer'])}"
        )
    liveness = summary.get("liveness")
    if isinstance(liveness, dict) and liveness.get("enabled"):
        lines.append(
            f"liveness: {liveness['refused_by_liveness']} of {liveness['tracks']} live trials"
            f" wrongly refused ({', '.join(liveness['participants']) or 'nobody'});"
            f" {liveness['ended_not_live']} tracks ended not live,"
            f" {liveness['ended_undecided']} undecided"
        )
    return lines


def sessions(config: KioskConfig, db: Path | None) -> list[SessionInfo]:
    from kiosk.trials.store import TrialStore

    with TrialStore(existing_database(config, db)) as store:
        return store.sessions()


def export_session(
    config: KioskConfig, db: Path | None, session_id: int | None, outputs: Outputs
) -> dict[str, object]:
    """Write a saved session (the latest when ``session_id`` is None); its summary."""
    from kiosk.trials.store import TrialStore

    path = existing_database(config, db)
    if not outputs.any:
        raise UserError("say what to write: --json PATH, --csv PATH and/or --report PATH")
    with TrialStore(path) as store:
        return write_outputs(outputs, config, store.load_session(session_id), {})


def simulation_clips(
    videos: Path | None, enrolled: Sequence[str] | None, visitors: Sequence[str] | None
) -> list[Clip]:
    """The participants' clips: names in ``videos`` (default: $KIOSK_SHARED/videos) or
    paths; ``enrolled`` and ``visitors`` default to the shared solo clips."""
    from kiosk.trials.simulation import DEFAULT_ENROLLED, DEFAULT_VISITORS, Clip

    if videos is None:
        shared = os.environ.get("KIOSK_SHARED")
        if not shared:
            raise UserError("say where the clips are: --videos DIR (or set $KIOSK_SHARED)")
        videos = Path(shared) / "videos"
    enrolled = list(enrolled) if enrolled is not None else list(DEFAULT_ENROLLED)
    visitors = list(visitors) if visitors is not None else list(DEFAULT_VISITORS)
    clips = []
    for name, is_enrolled in [(n, True) for n in enrolled] + [(n, False) for n in visitors]:
        path = Path(name) if Path(name).suffix else videos / f"{name}.mp4"
        if not path.is_file():
            raise UserError(f"video clip {path} does not exist")
        clips.append(Clip(path.stem, path, is_enrolled))
    if len({clip.name for clip in clips}) != len(clips):
        raise UserError("each participant needs their own clip; a clip name appears twice")
    return clips


@dataclass(frozen=True)
class SimulationOptions:
    """How `kiosk trials simulate` runs (:func:`simulation_clips` says what ``videos``,
    ``enrolled`` and ``visitors`` default to); None means the config's, for
    ``threshold`` the gallery's 0.5."""

    videos: Path | None = None
    enrolled: Sequence[str] | None = None
    visitors: Sequence[str] | None = None
    recognizer: str = "gallery"
    threshold: float | None = None
    detector_size: int = 320
    duration: float | None = None
    enroll_seconds: float = 1.0
    stride: int = 1
    leave_one_out: bool = False


def simulate(
    config: KioskConfig,
    options: SimulationOptions,
    outputs: Outputs,
    *,
    db: Path | None = None,
    progress: Callable[[str], None] = lambda line: None,
) -> dict[str, object]:
    """Enroll from the enrolled clips, run every clip's trials (saved in ``db`` if given,
    else in memory only), write ``outputs``; the summary (:func:`summary_lines`)."""
    from kiosk.trials.rules import liveness_refusals
    from kiosk.trials.simulation import gallery_factory, run_simulation
    from kiosk.trials.store import TrialStore

    if options.stride < 1:
        raise UserError(f"--stride must be at least 1, got {options.stride}")
    clips = simulation_clips(options.videos, options.enrolled, options.visitors)
    detector = build.detector(config, input_size=options.detector_size)
    threshold = 0.5 if options.threshold is None else options.threshold
    model = registry.model_path(build.MOBILEFACENET, build.model_dir(config))
    factory = gallery_factory(model, threshold)
    duration = options.duration if options.duration is not None else config.trials.duration
    monitor = None
    if config.liveness.enabled:
        from kiosk.live.liveness import LivenessMonitor

        monitor = LivenessMonitor(config.liveness, build.liveness_checker(config))
    else:
        progress("liveness: skipped ([liveness] enabled = false)")
    with TrialStore(db if db is not None else Path(":memory:")) as store:
        session = store.create_session(
            label="simulate " + " ".join(clip.name for clip in clips),
            duration=duration,
            threshold=threshold,
            min_share=config.trials.min_share,
            recognizer=options.recognizer,
        )
        timings = run_simulation(
            clips,
            detector,
            factory,
            session,
            enroll_seconds=options.enroll_seconds,
            stride=options.stride,
            enroll_config=config.enroll,
            liveness=monitor,
            leave_one_out=options.leave_one_out,
            progress=progress,
        )
        liveness: dict[str, object] = {"enabled": monitor is not None}
        if monitor is not None:
            liveness |= liveness_refusals(session.results, session.min_share)
            liveness["checks"] = timings.liveness_checks
        extra = {
            "recognizer": options.recognizer,
            "detector": f"{detector.name}@{options.detector_size}",
            "providers": detector.providers,
            "enroll_seconds": options.enroll_seconds,
            "stride": options.stride,
            "leave_one_out": options.leave_one_out,
            "clips": [{"name": c.name, "file": c.path.name, "enrolled": c.enrolled} for c in clips],
            "frames": timings.frames,
            "enroll_s": round(timings.enroll_s, 2),
            "trials_s": round(timings.trials_s, 2),
            "ms_per_frame": round(1000 * timings.trials_s / max(timings.frames, 1), 1),
            "liveness": liveness,
        }
        return write_outputs(outputs, config, session, extra)
