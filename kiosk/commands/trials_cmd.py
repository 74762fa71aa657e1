"""`kiosk trials [simulate|sessions|export]`: deployment trials, live, offline and from the log.

Without a verb, ``kiosk trials`` opens the operator console: the live camera view beside
the trials panel, fed by the same live pipeline as ``kiosk run``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

from kiosk.build import live_pipeline
from kiosk.config import KioskConfig, load_config
from models.errors import UserError
from models.paths import user_data_dir

if TYPE_CHECKING:
    from kiosk.live.pipeline import LivePipeline
    from kiosk.trials.session import TrialSession

RECOGNIZERS = ("gallery",)  # "clip" joins once the CLIP recognizer bundle exists


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "trials",
        help="five-second deployment trials (no verb: the live operator console)",
    )
    parser.add_argument(
        "--source",
        default=None,
        help="console: camera index, video file, stream URL or image folder (default: config's)",
    )
    parser.add_argument(
        "--db", type=Path, default=None, help="trials SQLite file (default: the user's data dir)"
    )
    parser.set_defaults(handler=_console)
    verbs = parser.add_subparsers(dest="verb", required=False, metavar="VERB")

    sim = verbs.add_parser(
        "simulate",
        help="run trials over video clips, one per participant (the deployment benchmark)",
    )
    sim.add_argument(
        "--videos",
        type=Path,
        default=None,
        help="folder of the clips (default: $KIOSK_SHARED/videos)",
    )
    sim.add_argument(
        "--enrolled",
        nargs="+",
        default=None,
        metavar="CLIP",
        help="clips of enrolled participants (default: solo_01 ... solo_06)",
    )
    sim.add_argument(
        "--visitors",
        nargs="*",
        default=None,
        metavar="CLIP",
        help="clips of people not enrolled (default: solo_07 solo_08 hamilton)",
    )
    sim.add_argument(
        "--enroll-seconds",
        type=float,
        default=1.0,
        help="enroll from this many first seconds of each enrolled clip",
    )
    sim.add_argument("--duration", type=float, default=None, help="trial window, seconds")
    sim.add_argument("--stride", type=int, default=1, help="use every STRIDE-th frame")
    sim.add_argument(
        "--leave-one-out",
        action="store_true",
        help="also run each enrolled clip as a stranger against a gallery without them",
    )
    sim.add_argument("--recognizer", choices=RECOGNIZERS, default="gallery")
    sim.add_argument(
        "--threshold",
        type=float,
        default=None,
        help="reject threshold (default: the recognizer's; gallery 0.5 cosine)",
    )
    sim.add_argument("--detector-size", type=int, default=320, help="detector input size")
    sim.add_argument(
        "--db",
        type=Path,
        default=argparse.SUPPRESS,  # keeps a --db given before the verb
        help="save the session in this SQLite file (default: in memory only)",
    )
    _add_outputs(sim)
    sim.set_defaults(handler=_simulate)

    sessions = verbs.add_parser("sessions", help="list the sessions in a trials database")
    sessions.add_argument("--db", type=Path, default=argparse.SUPPRESS, help="trials SQLite file")
    sessions.set_defaults(handler=_sessions)

    export = verbs.add_parser("export", help="export a saved session (CSV, JSON, HTML report)")
    export.add_argument("--db", type=Path, default=argparse.SUPPRESS, help="trials SQLite file")
    export.add_argument("--session", type=int, default=None, help="session id (default: latest)")
    _add_outputs(export)
    export.set_defaults(handler=_export)

    report = verbs.add_parser(
        "report", help="a report of a saved session, or with --site of every kiosk's trials"
    )
    report.add_argument("--db", type=Path, default=argparse.SUPPRESS, help="trials SQLite file")
    report.add_argument("--session", type=int, default=None, help="session id (default: latest)")
    report.add_argument(
        "--site", action="store_true", help="every kiosk's trials from the site registry"
    )
    _add_outputs(report)
    report.set_defaults(handler=_report)


def _add_outputs(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", type=Path, default=None, help="write metrics and trials as JSON")
    parser.add_argument("--csv", type=Path, default=None, help="write one row per trial")
    parser.add_argument("--report", type=Path, default=None, help="write an HTML report")
    parser.add_argument(
        "--target-fpr",
        type=float,
        default=None,
        help="FPR the threshold analysis looks for (default 0.02)",
    )


def default_database(config: KioskConfig) -> Path:
    if config.trials.database is not None:
        return config.trials.database
    return user_data_dir() / "trials.sqlite"


def _write_outputs(
    args: argparse.Namespace, config: KioskConfig, session: TrialSession, extra: dict[str, object]
) -> dict[str, object]:
    from kiosk.trials.report import export_csv, export_json, session_summary, write_html_report

    target = args.target_fpr if args.target_fpr is not None else config.trials.target_fpr
    if args.json is not None:
        summary = export_json(session, args.json, target_fpr=target, **extra)
    else:
        summary = {**session_summary(session, target_fpr=target, frames=False), **extra}
    if args.csv is not None:
        export_csv(session, args.csv)
    if args.report is not None:
        write_html_report(session, args.report, target_fpr=target)
    return summary


def _print_summary(summary: dict[str, object]) -> None:
    def pct(value: object) -> str:
        return "n/a" if value is None else f"{100 * float(value):.1f}%"  # type: ignore[arg-type]

    print(
        f"trials {summary['trials']}: TP {summary['tp']}  FP {summary['fp']}"
        f" (misidentified {summary['misidentified']})  FN {summary['fn']}  TN {summary['tn']}"
        f"  no face {summary['no_face']}"
    )
    print(
        f"accuracy {pct(summary['accuracy'])}  FPR {pct(summary['fpr'])}  FNR {pct(summary['fnr'])}"
    )
    if summary["attack_refused"] or summary["attack_accepted"]:
        print(
            f"attacks refused {summary['attack_refused']}  accepted {summary['attack_accepted']}"
            f"  APCER {pct(summary['apcer'])}"
        )
    liveness = summary.get("liveness")
    if isinstance(liveness, dict) and liveness.get("enabled"):
        print(
            f"liveness: {liveness['refused_by_liveness']} of {liveness['tracks']} live trials"
            f" wrongly refused ({', '.join(liveness['participants']) or 'nobody'});"
            f" {liveness['ended_not_live']} tracks ended not live,"
            f" {liveness['ended_undecided']} undecided"
        )


def enrolled_roster(config: KioskConfig) -> list[str]:
    """The names of the people in the store who have enrollment photos."""
    from enroll.store import open_store

    with open_store(config.enroll) as people:
        return [person.name for person in people.people() if person.photo_count > 0]


def trials_pipeline(config: KioskConfig, source: str | None) -> LivePipeline:
    """The live pipeline for trials: ``kiosk run``'s, classifying every frame of a track
    (``reclassify_every = 1``) so each frame of a trial carries a fresh prediction."""

    live = config.kiosk.model_copy(update={"reclassify_every": 1})
    return live_pipeline(config.model_copy(update={"kiosk": live}), source=source)


def _console(args: argparse.Namespace) -> int:
    from kiosk.trials.rules import Participant
    from kiosk.trials.site import open_trial_store
    from kiosk.ui import application
    from kiosk.ui.trials_window import TrialsWindow

    config = load_config(args.config)
    app = application()
    roster = enrolled_roster(config)
    pipeline = trials_pipeline(config, args.source)
    source = args.source if args.source is not None else config.kiosk.source
    with open_trial_store(
        config, args.db if args.db is not None else default_database(config)
    ) as store:
        session = store.create_session(
            label=f"live {source}",
            duration=config.trials.duration,
            threshold=pipeline.recognizers.current().threshold,
            min_share=config.trials.min_share,
            recognizer=config.recognizer.kind,
            participants=[Participant(name, enrolled=True) for name in roster],
        )
        # Liveness reaches the tracks through the tracker's veto; without one no check
        # runs, and a named track must not be recorded as live.
        liveness = config.liveness.enabled and pipeline.tracker.veto is not None
        window = TrialsWindow(pipeline, session, liveness=liveness, poll_ms=config.ui.poll_ms)
        if not roster:
            window.panel.message.setText("nobody is enrolled yet: add visitors, or enroll first")
        window.start()
        try:
            return int(app.exec())
        finally:
            window.shutdown()


def _simulate(args: argparse.Namespace) -> int:
    from kiosk.trials.rules import liveness_refusals
    from kiosk.trials.simulation import (
        DEFAULT_ENROLLED,
        DEFAULT_VISITORS,
        Clip,
        gallery_factory,
        run_simulation,
    )
    from kiosk.trials.store import TrialStore
    from models import registry
    from models.detector import FaceDetector

    config = load_config(args.config)
    if args.stride < 1:
        raise UserError(f"--stride must be at least 1, got {args.stride}")
    videos = args.videos
    if videos is None:
        shared = os.environ.get("KIOSK_SHARED")
        if not shared:
            raise UserError("say where the clips are: --videos DIR (or set $KIOSK_SHARED)")
        videos = Path(shared) / "videos"
    enrolled = args.enrolled if args.enrolled is not None else list(DEFAULT_ENROLLED)
    visitors = args.visitors if args.visitors is not None else list(DEFAULT_VISITORS)
    clips = []
    for name, is_enrolled in [(n, True) for n in enrolled] + [(n, False) for n in visitors]:
        path = Path(name) if Path(name).suffix else videos / f"{name}.mp4"
        if not path.is_file():
            raise UserError(f"video clip {path} does not exist")
        clips.append(Clip(path.stem, path, is_enrolled))
    if len({clip.name for clip in clips}) != len(clips):
        raise UserError("each participant needs their own clip; a clip name appears twice")

    model_dir = registry.resolve_model_dir(config.models.dir)
    detector = FaceDetector.from_name(
        config.detector.name,
        model_dir,
        input_size=args.detector_size,
        threshold=config.detector.threshold,
        device=config.models.device,
        threads=config.models.threads,
    )
    threshold = 0.5 if args.threshold is None else args.threshold
    factory = gallery_factory(registry.model_path("mobilefacenet_128d", model_dir), threshold)
    duration = args.duration if args.duration is not None else config.trials.duration
    monitor = None
    if config.liveness.enabled:
        from kiosk.live.liveness import LivenessMonitor
        from models.antispoof import LivenessChecker

        checker = LivenessChecker.from_dir(
            model_dir, device=config.models.device, threads=config.models.threads
        )
        monitor = LivenessMonitor(config.liveness, checker)
    else:
        print("liveness: skipped ([liveness] enabled = false)", file=sys.stderr)

    with TrialStore(args.db if args.db is not None else Path(":memory:")) as store:
        session = store.create_session(
            label="simulate " + " ".join(clip.name for clip in clips),
            duration=duration,
            threshold=threshold,
            min_share=config.trials.min_share,
            recognizer=args.recognizer,
        )
        timings = run_simulation(
            clips,
            detector,
            factory,
            session,
            enroll_seconds=args.enroll_seconds,
            stride=args.stride,
            enroll_config=config.enroll,
            liveness=monitor,
            leave_one_out=args.leave_one_out,
            progress=lambda line: print(line, file=sys.stderr),
        )
        liveness: dict[str, object] = {"enabled": monitor is not None}
        if monitor is not None:
            liveness |= liveness_refusals(session.results, session.min_share)
            liveness["checks"] = timings.liveness_checks
        extra = {
            "recognizer": args.recognizer,
            "detector": f"{detector.name}@{args.detector_size}",
            "providers": detector.providers,
            "enroll_seconds": args.enroll_seconds,
            "stride": args.stride,
            "leave_one_out": args.leave_one_out,
            "clips": [{"name": c.name, "file": c.path.name, "enrolled": c.enrolled} for c in clips],
            "frames": timings.frames,
            "enroll_s": round(timings.enroll_s, 2),
            "trials_s": round(timings.trials_s, 2),
            "ms_per_frame": round(1000 * timings.trials_s / max(timings.frames, 1), 1),
            "liveness": liveness,
        }
        summary = _write_outputs(args, config, session, extra)
    _print_summary(summary)
    return 0


def _sessions(args: argparse.Namespace) -> int:
    from kiosk.trials.store import TrialStore

    path = args.db if args.db is not None else default_database(load_config(args.config))
    if not path.exists():
        raise UserError(f"no trials database at {path}")
    with TrialStore(path) as store:
        infos = store.sessions()
    print(json.dumps([asdict(info) for info in infos], indent=2))
    return 0


def _export(args: argparse.Namespace) -> int:
    from kiosk.trials.store import TrialStore

    config = load_config(args.config)
    path = args.db if args.db is not None else default_database(config)
    if not path.exists():
        raise UserError(f"no trials database at {path}")
    if args.json is None and args.csv is None and args.report is None:
        raise UserError("say what to write: --json PATH, --csv PATH and/or --report PATH")
    with TrialStore(path) as store:
        session = store.load_session(args.session)
        summary = _write_outputs(args, config, session, {})
    _print_summary(summary)
    return 0


def _report(args: argparse.Namespace) -> int:
    """`kiosk trials report [--site]`: one session's report, or the site's."""
    if not args.site:
        return _export(args)
    from kiosk.setup.site import require_site
    from kiosk.site.connect import connect, registry_errors
    from kiosk.site.registry import Registry
    from kiosk.trials.site import site_session

    config = load_config(args.config)
    with registry_errors(), connect(require_site(config)) as conn:
        trials = Registry(conn).trials()
    if not trials:
        raise UserError("the site registry holds no trials this kiosk's role may read yet")
    session, extra = site_session(trials)
    summary = _write_outputs(args, config, session, extra)
    _print_summary(summary)
    print(
        "kiosks: " + ", ".join(f"{k} ({n})" for k, n in extra["trials_per_kiosk"].items()),
    )
    return 0
