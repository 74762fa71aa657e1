"""What `kiosk trials` does, free of argparse: the trials database, the enrolled roster,
the console's pipeline and session, the offline simulation over clips, and the exports
of a session (JSON, CSV, HTML) with its summary."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypedDict

from kiosk import build
from kiosk.config import KioskConfig
from models import registry
from models.errors import ModelError, UserError
from models.paths import user_data_dir

if TYPE_CHECKING:
    from kiosk.live.pipeline import LivePipeline
    from kiosk.trials.exports import ReportLog
    from kiosk.trials.recognizers import ClipFactory, RecognizerFactory
    from kiosk.trials.report import ReportHeader
    from kiosk.trials.session import TrialSession
    from kiosk.trials.simulation import Clip, Contender
    from kiosk.trials.store import SessionInfo, TrialStore
    from models.train.bundle import DetectorInfo


def default_database(config: KioskConfig) -> Path:
    if config.trials.database is not None:
        return config.trials.database
    return user_data_dir() / "trials.sqlite"


def report_log(
    config: KioskConfig,
    sessions: Sequence[TrialSession],
    target_fpr: float,
    *,
    remakeable: bool = False,
    site_until: int | None = None,
    store: TrialStore | None = None,
) -> ReportLog:
    """What records the reports of ``sessions`` in the kiosk's trials database (``store``,
    when it is open already), where an erasure finds them (kiosk/trials/exports.py);
    ``site_until``: a site report's (:class:`~kiosk.trials.store.ReportRecord`)."""
    from kiosk.trials.exports import ReportLog

    database = default_database(config).expanduser()
    return ReportLog(
        database, sessions, target_fpr, remakeable=remakeable, site_until=site_until, store=store
    )


def existing_database(config: KioskConfig, path: Path | None) -> Path:
    """``path``, else the config's database; it must exist."""
    path = path if path is not None else default_database(config)
    if not path.exists():
        raise UserError(f"no trials database at {path}")
    return path


class EnrolledRoster:
    """The people of the store who have enrollment photos (person id -> name), as the
    console's roster, and who of them was erased since: deleted, purged or erased by a
    site sync, in this process or another. It asks its own read-only view of the store
    (:class:`~enroll.store.StoreWatcher`, a few microseconds when nothing changed; the
    store's WAL never blocks it), so the console may ask on every poll of its window."""

    def __init__(self, config: KioskConfig) -> None:
        from enroll.store import open_store

        with open_store(config.enroll) as people:
            self.people = {p.uid: p.name for p in people.people() if p.photo_count > 0}
            self._watcher = people.watcher()
        self._watcher.changed()  # the store as read above is the baseline

    @property
    def names(self) -> list[str]:
        return list(self.people.values())

    def erased(self) -> list[str]:
        """The names of the roster's people no longer in the store since last asked
        (they leave the roster)."""
        if not self._watcher.changed():
            return []
        now = self._watcher.people()
        return [self.people.pop(uid) for uid in [uid for uid in self.people if uid not in now]]

    def close(self) -> None:
        self._watcher.close()


def trials_pipeline(
    config: KioskConfig, source: str | None, on_erased: Callable[[], None] | None = None
) -> LivePipeline:
    """The live pipeline for trials: ``kiosk run``'s, classifying every frame of a track
    (``reclassify_every = 1``) so each frame of a trial carries a fresh prediction. On a
    site, ``on_erased`` finishes the erasures its sync applies (as the door's does)."""

    live = config.kiosk.model_copy(update={"reclassify_every": 1})
    return build.live_pipeline(
        config.model_copy(update={"kiosk": live}), source=source, on_erased=on_erased
    )


def configured_recognizer(config: KioskConfig) -> str:
    """What the live pipeline recognizes with, as a session records it: ``[recognizer]
    kind`` (each frame also records the recognizer's label and version), with CLIP's
    model and weights, :data:`~kiosk.trials.recognizers.UNTRAINED` for an untrained tower."""
    from kiosk.trials.recognizers import UNTRAINED

    kind = config.recognizer.kind
    if kind == "embedding_gallery":
        return f"{kind} ({config.recognizer.embedder})"
    what = f"{kind} {config.clip.model}, pretrained {config.clip.pretrained}"
    return f"{what}: {UNTRAINED}" if config.clip.pretrained == "none" else what


class Origin(TypedDict):
    """Where and by whom a session runs (:meth:`TrialStore.create_session`'s keywords)."""

    site: str
    kiosk: str
    operator: str


def session_origin(config: KioskConfig, operator: str | None = None) -> Origin:
    """Where and by whom a session is run, as the trials store records it for the
    reports' header: the site registry (none for a single kiosk), the kiosk (its site id,
    else this machine's host name) and the operator (``operator``, else the login name)."""
    import getpass
    import socket

    site = ""
    kiosk = socket.gethostname()
    if config.site is not None:
        site = f"{config.site.dbname} on {config.site.host or 'the local socket'}"
        kiosk = config.site.kiosk_id
    if operator is None:
        try:
            operator = getpass.getuser()
        except (OSError, KeyError):  # no login name (a container without a passwd entry)
            operator = ""
    return Origin(site=site, kiosk=kiosk, operator=operator.strip())


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
    outputs: Outputs,
    config: KioskConfig,
    session: TrialSession,
    extra: dict[str, object],
    header: ReportHeader | None = None,
    *,
    site_until: int | None = None,
    store: TrialStore | None = None,
) -> dict[str, object]:
    """Write the asked-for exports, each recorded for erasure (:func:`report_log`, with
    ``site_until`` and ``store``); the session's summary (with ``extra``). ``header``:
    the reports' header, when the session's store does not hold it (a site's trials)."""
    from kiosk.trials.report import export_csv, export_json, session_summary, write_html_report

    target = outputs.target_fpr if outputs.target_fpr is not None else config.trials.target_fpr
    # Without extra facts or a header of its own, a report is what an erasure can make
    # again from its session (kiosk.trials.exports.write_session_report).
    recorder = report_log(
        config,
        [session],
        target,
        remakeable=not extra and header is None,
        site_until=site_until,
        store=store,
    )
    if outputs.json is not None:
        summary = export_json(
            session, outputs.json, target_fpr=target, header=header, recorder=recorder, **extra
        )
    else:
        summary = {
            **session_summary(session, target_fpr=target, frames=False, header=header),
            **extra,
        }
    if outputs.csv is not None:
        export_csv(session, outputs.csv, header=header, recorder=recorder)
    if outputs.report is not None:
        write_html_report(
            session,
            outputs.report,
            target_fpr=target,
            notes=extra,
            header=header,
            recorder=recorder,
        )
    return summary


def _pct(value: object) -> str:
    return "n/a" if value is None else f"{100 * float(value):.1f}%"  # type: ignore[arg-type]


def _rate(summary: dict[str, Any], name: str) -> str:
    """A rate with its count and Wilson 95% interval (``ci95``), else the bare rate."""
    from kiosk.trials.report import format_rate

    intervals = summary.get("ci95")
    if isinstance(intervals, dict):
        return format_rate(intervals.get(name))
    return _pct(summary.get(name))


def summary_lines(summary: dict[str, Any]) -> list[str]:
    """A summary for a terminal: a session's (outcomes, rates, attacks, liveness), or a
    comparison's (a line per recognizer, then each one's); the UNTRAINED warning first
    and the clips skipped at enrollment."""
    lines: list[str] = []
    if summary.get("warning"):
        lines.append(str(summary["warning"]))
    for item in summary.get("skipped_clips") or []:
        gates = ", ".join(f"{gate} {count}" for gate, count in item["gates"].items())
        lines.append(
            f"skipped {item['name']}: no enrollment photo in its first"
            f" {item['enroll_seconds']:g} s; blocked most by {item['blocked_by']}"
            f" ({gates} of {item['frames']} frames)"
        )
    if "runs" not in summary:
        return lines + _session_lines(summary)
    for row in summary["comparison"]:
        lines.append(
            f"{row['label']:<22} trials {row['trials']}  TP {row['tp']}  FP {row['fp']}"
            f" (misid. {row['misidentified']})  FN {row['fn']}  TN {row['tn']}"
            f"  accuracy {_rate(row, 'accuracy')}  FPR {_rate(row, 'fpr')}"
            f"  FNR {_rate(row, 'fnr')}" + ("  UNTRAINED" if row["untrained"] else "")
        )
    for run in summary["runs"].values():
        lines.append(f"-- {run['recognizer_label']}: {run['description']}")
        lines += ["   " + line for line in _session_lines(run)]
    return lines


def _session_lines(summary: dict[str, Any]) -> list[str]:
    lines = [
        f"trials {summary['trials']}: TP {summary['tp']}  FP {summary['fp']}"
        f" (misidentified {summary['misidentified']})  FN {summary['fn']}  TN {summary['tn']}"
        f"  no face {summary['no_face']}",
        f"accuracy {_rate(summary, 'accuracy')}",
        f"FPR {_rate(summary, 'fpr')}  FNR {_rate(summary, 'fnr')}",
    ]
    if summary["attack_refused"] or summary["attack_accepted"]:
        lines.append(
            f"attacks refused {summary['attack_refused']}  accepted {summary['attack_accepted']}"
            f"  APCER {_rate(summary, 'apcer')}"
        )
    advice = summary.get("recommendation")
    if isinstance(advice, dict):
        lines.append(f"threshold: {advice['reason']}")
    liveness = summary.get("liveness")
    if isinstance(liveness, dict) and liveness.get("enabled"):
        from kiosk.trials.report import format_rate, rate_interval

        refused = rate_interval(int(liveness["refused_by_liveness"]), int(liveness["tracks"]))
        lines.append(
            f"liveness: {format_rate(refused)} of real people's trials wrongly refused"
            f" ({', '.join(liveness['participants']) or 'nobody'});"
            f" {liveness['ended_not_live']} tracks ended not live,"
            f" {liveness['ended_undecided']} undecided"
        )
    builds = summary.get("bundles") or []
    if builds and "test_accuracy" in builds[0]:
        first = builds[0]
        left_out = ", ".join(f"{s['path']} ({s['reason']})" for s in first["skipped"])
        lines.append(
            f"{first['label']}: {len(first['people'])} people, held-out accuracy"
            f" {_pct(first['test_accuracy'])} (before finetuning"
            f" {_pct(first['test_accuracy_before'])}, chance {_pct(first['chance'])}),"
            f" {first['epochs']} epochs in {first['build_s']} s"
            + (f"; left out: {left_out}" if left_out else "")
        )
        if len(builds) > 1:
            seconds = sum(float(b["build_s"]) for b in builds[1:])
            lines.append(
                f"{len(builds) - 1} leave-one-out bundles trained in {seconds:.1f} s"
                " (the enrollment features computed once)"
            )
    for held in summary.get("held_out_skipped") or []:
        lines.append(f"no run without {held['held_out']}: {held['reason']}")
    return lines


def sessions(config: KioskConfig, db: Path | None) -> list[SessionInfo]:
    from kiosk.trials.store import TrialStore

    with TrialStore(existing_database(config, db)) as store:
        return store.sessions()


SESSION_COLUMNS = ("id", "date", "trials", "threshold", "kiosk", "operator", "recognizer", "label")


def session_record(info: SessionInfo) -> dict[str, object]:
    """A session as `kiosk trials sessions --json` prints it: the store's record, with
    its date in local time beside the epoch seconds."""
    from dataclasses import asdict

    from kiosk.trials.report import local_time

    return {**asdict(info), "date": local_time(info.created_at)}


def sessions_table(infos: Sequence[SessionInfo]) -> list[str]:
    """The sessions as a table for a terminal, dates in local time."""
    if not infos:
        return ["no sessions yet"]
    rows = [
        [str(session_record(info)[column] or "") for column in SESSION_COLUMNS] for info in infos
    ]
    for row, info in zip(rows, infos, strict=True):
        row[3] = f"{info.threshold:g}"
    widths = [max(len(c), *(len(r[i]) for r in rows)) for i, c in enumerate(SESSION_COLUMNS)]
    numeric = {"id", "trials", "threshold"}

    def line(cells: Sequence[str]) -> str:
        return "  ".join(
            cell.rjust(width) if name in numeric else cell.ljust(width)
            for name, cell, width in zip(SESSION_COLUMNS, cells, widths, strict=True)
        ).rstrip()

    return [line(SESSION_COLUMNS), line(["-" * w for w in widths]), *map(line, rows)]


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


RECOGNIZERS = ("clip", "gallery", "fusion")


@dataclass(frozen=True)
class SimulationOptions:
    """How `kiosk trials simulate` runs (:func:`simulation_clips` says what ``videos``,
    ``enrolled`` and ``visitors`` default to). ``recognizers``: each runs over the same
    frames into its own session (two or more: a comparison). None means the config's:
    ``threshold`` (one recognizer only) is CLIP's ``[clip] threshold``, the gallery's 0.5
    cosine; ``pretrained`` (``openai``, ``none`` or ``auto``: openai when RN50.pt is in
    the model directory, else none) is ``[clip] pretrained``; ``epochs`` ``[train] epochs``."""

    videos: Path | None = None
    enrolled: Sequence[str] | None = None
    visitors: Sequence[str] | None = None
    recognizers: Sequence[str] = ("gallery",)
    threshold: float | None = None
    detector_size: int = 320
    duration: float | None = None
    enroll_seconds: float = 1.0
    stride: int = 1
    leave_one_out: bool = False
    pretrained: str | None = None
    epochs: int | None = None


def clip_pretrained(config: KioskConfig, requested: str | None) -> Literal["openai", "none"]:
    """``openai`` or ``none``: ``requested`` (``auto``: openai when RN50.pt is in the
    model directory), else ``[clip] pretrained``."""
    from models.clip.identity import OPENAI_WEIGHTS

    if requested is None:
        return config.clip.pretrained
    if requested == "auto":
        weights = build.model_dir(config) / registry.spec(OPENAI_WEIGHTS).file
        return "openai" if weights.is_file() else "none"
    if requested not in ("openai", "none"):
        raise UserError(f"--pretrained must be openai, none or auto, got {requested!r}")
    return "openai" if requested == "openai" else "none"


def simulation_factories(
    config: KioskConfig,
    options: SimulationOptions,
    detector: DetectorInfo,
    progress: Callable[[str], None] = lambda line: None,
) -> list[RecognizerFactory]:
    """The recognizers to compare, in the order asked, each built once per run."""
    from kiosk.trials.recognizers import FusionFactory, GalleryFactory

    names = list(dict.fromkeys(options.recognizers))
    unknown = [name for name in names if name not in RECOGNIZERS]
    if unknown or not names:
        raise UserError(f"--recognizer must be one of {', '.join(RECOGNIZERS)}, got {unknown}")
    if options.threshold is not None and len(names) > 1:
        raise UserError("--threshold sets one recognizer's: give it with one --recognizer only")
    given = options.threshold
    # The simulation's gallery is MobileFaceNet's: [recognizer] gallery_threshold is its
    # cosine threshold, unless that was set for a CLIP-embedding gallery.
    mobilefacenet = config.recognizer.embedder == "mobilefacenet"
    configured = config.recognizer.gallery_threshold if mobilefacenet else 0.5
    model = registry.model_path(build.MOBILEFACENET, build.model_dir(config))
    gallery = GalleryFactory(
        model, given if given is not None and names == ["gallery"] else configured
    )
    clip = None
    if {"clip", "fusion"} & set(names):
        threshold = given if given is not None else config.clip.threshold
        clip = clip_factory(config, options, detector, threshold, progress)
    factories: list[RecognizerFactory] = []
    for name in names:
        if name == "gallery":
            factories.append(gallery)
        elif name == "clip":
            assert clip is not None
            factories.append(clip)
        else:
            assert clip is not None
            factories.append(FusionFactory(clip, GalleryFactory(model, configured)))
    return factories


def clip_factory(
    config: KioskConfig,
    options: SimulationOptions,
    detector: DetectorInfo,
    threshold: float,
    progress: Callable[[str], None] = lambda line: None,
) -> ClipFactory:
    """The CLIP recognizer's trainer: the open_clip model, its ONNX image tower (exported
    once into the training cache, where `kiosk train` keeps it too) and the ``[train]``
    settings. Without RN50.pt (``pretrained = "openai"``) a :class:`ModelError` says how
    to fetch it, or to run untrained."""
    import dataclasses

    from kiosk.training import feature_cache_dir
    from kiosk.trials.recognizers import ClipFactory
    from models.clip.identity import OPENAI_WEIGHTS, warn_untrained
    from models.clip.towers import OnnxImageTower, build_clip, export_image_tower

    pretrained = clip_pretrained(config, options.pretrained)
    try:
        if pretrained == "openai":  # before torch is imported: the answer comes at once
            registry.model_path(OPENAI_WEIGHTS, build.model_dir(config))
        model, identity = build_clip(config.clip.model, pretrained, build.model_dir(config))
    except ModelError as error:
        if pretrained != "openai":
            raise
        raise ModelError(
            f'the CLIP recognizer ([clip] pretrained = "openai") needs the RN50 weights: '
            f"{error} To try the pipeline without them, run with --pretrained none (an "
            "untrained RN50: every figure is then labelled UNTRAINED and means nothing)."
        ) from None
    if pretrained == "none":
        warn_untrained()
    tower_file = feature_cache_dir() / identity.key / "image_tower.onnx"
    if not tower_file.is_file():
        progress(f"clip: exporting the {config.clip.model} image tower to ONNX (once)")
        export_image_tower(model.visual, tower_file)
    tower = OnnxImageTower(tower_file, device=config.models.device, threads=config.models.threads)
    settings = build.train_settings(config)
    if options.epochs is not None:
        if options.epochs < 1:
            raise UserError(f"--epochs must be at least 1, got {options.epochs}")
        settings = dataclasses.replace(settings, epochs=options.epochs)
    return ClipFactory(
        model,
        identity,
        tower,
        settings,
        detector,
        threshold=threshold,
        rejection=config.clip.rejection,
    )


def simulate(
    config: KioskConfig,
    options: SimulationOptions,
    outputs: Outputs,
    *,
    db: Path | None = None,
    operator: str | None = None,
    progress: Callable[[str], None] = lambda line: None,
) -> dict[str, object]:
    """Enroll from the enrolled clips, run every clip's trials with each recognizer (saved
    in ``db`` if given, else in memory only), write ``outputs``; the summary
    (:func:`summary_lines`): one recognizer's, or with several a comparison
    (``recognizers``, ``comparison`` and each one's summary under ``runs``)."""
    from kiosk.trials.report import rate_interval
    from kiosk.trials.rules import liveness_refusals
    from kiosk.trials.simulation import Contender, run_simulation
    from kiosk.trials.store import TrialStore
    from models.train.bundle import DetectorRecord

    if options.stride < 1:
        raise UserError(f"--stride must be at least 1, got {options.stride}")
    clips = simulation_clips(options.videos, options.enrolled, options.visitors)
    detector = build.detector(config, input_size=options.detector_size)
    record = DetectorRecord(detector.name, options.detector_size)
    factories = simulation_factories(config, options, record, progress)
    duration = options.duration if options.duration is not None else config.trials.duration
    monitor = None
    if config.liveness.enabled:
        from kiosk.live.liveness import LivenessMonitor

        monitor = LivenessMonitor(config.liveness, build.liveness_checker(config))
    else:
        progress("liveness: skipped ([liveness] enabled = false)")
    names = " ".join(clip.name for clip in clips)
    with TrialStore(db if db is not None else Path(":memory:")) as store:
        contenders = [
            Contender(
                factory,
                store.create_session(
                    label=f"simulate {names} [{factory.name}]",
                    duration=duration,
                    threshold=factory.threshold,
                    min_share=config.trials.min_share,
                    recognizer=factory.description,
                    **session_origin(config, operator),
                ),
            )
            for factory in factories
        ]
        result = run_simulation(
            clips,
            detector,
            contenders,
            enroll_seconds=options.enroll_seconds,
            stride=options.stride,
            enroll_config=config.enroll,
            liveness=monitor,
            leave_one_out=options.leave_one_out,
            progress=progress,
        )
        skipped = {item.clip.name for item in result.skipped}
        shared: dict[str, object] = {
            "detector": f"{detector.name}@{options.detector_size}",
            "providers": detector.providers,
            "enroll_seconds": options.enroll_seconds,
            "stride": options.stride,
            "leave_one_out": options.leave_one_out,
            "clips": [
                {
                    "name": c.name,
                    "file": c.path.name,
                    "enrolled": c.enrolled,
                    "photos": len(result.enrollments[c.name].photos)
                    if c.name in result.enrollments
                    else 0,
                }
                for c in clips
                if c.name not in skipped
            ],
            "skipped_clips": [item.as_dict() for item in result.skipped],
            "enroll_s": round(result.enroll_s, 2),
        }
        runs: dict[str, dict[str, object]] = {}
        for contender in result.contenders:
            liveness: dict[str, object] = {"enabled": monitor is not None}
            if monitor is not None:
                session = contender.session
                liveness |= liveness_refusals(session.results, session.min_share)
                liveness["refused_ci95"] = rate_interval(
                    int(liveness["refused_by_liveness"]),  # type: ignore[call-overload]
                    int(liveness["tracks"]),  # type: ignore[call-overload]
                )
                liveness["checks"] = result.liveness_checks
            runs[contender.name] = _contender_summary(contender, liveness)
        return write_simulation_outputs(outputs, config, result.contenders, runs, shared)


def _contender_summary(contender: Contender, liveness: dict[str, object]) -> dict[str, object]:
    factory = contender.factory
    summary: dict[str, object] = {
        "recognizer": factory.name,
        "recognizer_label": contender.label,
        "description": factory.description,
        "untrained": factory.untrained,
        "settings": factory.settings(),
        "bundles": contender.builds,
        "held_out_skipped": contender.held_out_skipped,
        "frames": contender.frames,
        "build_s": round(contender.build_s, 2),
        "trials_s": round(contender.trials_s, 2),
        "ms_per_frame": round(1000 * contender.trials_s / max(contender.frames, 1), 1),
        "liveness": liveness,
    }
    if factory.untrained:
        from models.clip.identity import UNTRAINED_WARNING

        summary["warning"] = UNTRAINED_WARNING
    return summary


COMPARED = ("trials", "tp", "fp", "misidentified", "fn", "tn", "no_face", "accuracy", "fpr", "fnr")


def write_simulation_outputs(
    outputs: Outputs,
    config: KioskConfig,
    contenders: Sequence[Contender],
    runs: dict[str, dict[str, object]],
    shared: dict[str, object],
) -> dict[str, object]:
    """One recognizer: its session's exports (with ``runs``' and ``shared`` facts). Several:
    one JSON and one HTML report comparing them (and a CSV of every trial, a column
    naming the recognizer)."""
    from kiosk.trials.report import (
        export_csv,
        export_json_data,
        session_summary,
        write_comparison_report,
    )

    if len(contenders) == 1:
        name = contenders[0].name
        return write_outputs(outputs, config, contenders[0].session, {**runs[name], **shared})
    target = outputs.target_fpr if outputs.target_fpr is not None else config.trials.target_fpr
    full = outputs.json is not None
    summaries = {
        c.name: {**session_summary(c.session, target_fpr=target, frames=full), **runs[c.name]}
        for c in contenders
    }
    untrained = [c.name for c in contenders if c.factory.untrained]
    summary: dict[str, object] = {
        "recognizers": [c.name for c in contenders],
        "comparison": [
            {
                "recognizer": name,
                "label": s["recognizer_label"],
                "description": s["description"],
                "untrained": s["untrained"],
                **{key: s[key] for key in COMPARED},
                "ci95": s["ci95"],
                "ms_per_frame": s["ms_per_frame"],
            }
            for name, s in summaries.items()
        ],
        "untrained": untrained,
        **shared,
        "runs": summaries,
    }
    if untrained:
        from models.clip.identity import UNTRAINED_WARNING

        summary["warning"] = UNTRAINED_WARNING
    sessions = [c.session for c in contenders]
    recorder = report_log(config, sessions, target)
    if outputs.json is not None:
        export_json_data(outputs.json, summary, recorder=recorder)
    if outputs.csv is not None:
        export_csv(sessions, outputs.csv, recorder=recorder)
    if outputs.report is not None:
        write_comparison_report(
            sessions, outputs.report, target_fpr=target, notes=summary, recorder=recorder
        )
    return summary
