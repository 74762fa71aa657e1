"""Trials on a site: each finished trial is queued for the registry, and the registry's
trials of every kiosk make one report (`kiosk trials report --site`).

A trial is queued (durably, with a fresh UUID as its idempotency key) just before the
local transaction that finishes it commits, so a crash never loses a finished trial.
A crash between the two leaves a queued trial the local file lacks: opening the store
drops such entries before they are pushed (a push in that millisecond would leave one
trial the registry has and the kiosk does not, never the reverse). The face thumbnail
stays on the kiosk.
"""

from __future__ import annotations

import collections
import json
import logging
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kiosk.config import KioskConfig
from kiosk.site.state import SiteState
from kiosk.trials.rules import FrameDecision, Outcome, Participant, TrialResult
from kiosk.trials.session import TrialSession
from kiosk.trials.store import ReportRecord, TrialStore
from models.errors import UserError

if TYPE_CHECKING:
    from kiosk.trials.report import ReportHeader
    from kiosk.trials.runs import Outputs

log = logging.getLogger(__name__)


def session_key(kiosk_id: str, database: Path, session_id: int, created_at: float) -> str:
    """A stable UUID for a local session (the same on every retry)."""
    name = f"{kiosk_id}|{database.resolve()}|{session_id}|{created_at!r}"
    return str(uuid.uuid5(uuid.NAMESPACE_URL, name))


class SiteTrialStore(TrialStore):
    """A trials database whose finished trials are also queued for the site registry."""

    def __init__(self, path: Path, state: SiteState, kiosk_id: str) -> None:
        super().__init__(path)
        self.state = state
        self.kiosk_id = kiosk_id
        self._forget_unfinished()

    def _forget_unfinished(self) -> None:
        """Drop queued trials of this file's sessions that it never committed."""
        infos = self.sessions()
        keys = {session_key(self.kiosk_id, self.path, i.id, i.created_at) for i in infos}
        finished = {
            (session_key(self.kiosk_id, self.path, i.id, i.created_at), r.started_at)
            for i in infos
            for r in self.load_session(i.id).results
        }
        for entry in self.state.queued("trial"):
            try:
                data = json.loads(entry.payload)
                where = (data["session"]["key"], data["started_at"])
            except (ValueError, KeyError, TypeError):
                continue  # malformed: the sync worker refuses it
            if where[0] in keys and where not in finished:
                self.state.done(entry.id)

    def finish_trial(self, trial_id: int, result: TrialResult) -> None:
        row = self._db.execute("SELECT session_id FROM trials WHERE id = ?", (trial_id,)).fetchone()
        info = next(i for i in self.sessions() if i.id == int(row[0]))
        payload = {
            "key": str(uuid.uuid4()),
            "session": {
                "key": session_key(self.kiosk_id, self.path, info.id, info.created_at),
                "label": info.label,
                "created_at": info.created_at,
                "duration": info.duration,
                "threshold": info.threshold,
                "min_share": info.min_share,
                "recognizer": info.recognizer,
            },
            "participant": result.participant.name,
            "enrolled": result.participant.code,
            "started_at": result.started_at,
            "duration": result.duration,
            "answer": result.answer,
            "outcome": result.outcome.value,
            "misidentified": result.misidentified,
            "source": result.source,
            "frames": [
                [f.t, f.face, f.best, f.confidence, f.threshold, f.accepted, f.live]
                for f in result.frames
            ],
        }
        self.state.enqueue(f"trial:{payload['key']}", "trial", json.dumps(payload).encode())
        super().finish_trial(trial_id, result)

    def close(self) -> None:
        super().close()
        self.state.close()


def open_trial_store(config: KioskConfig, path: Path) -> TrialStore:
    """The trials database at ``path``; on a site, one that also pushes its trials."""
    if config.site is None or str(path) == ":memory:":
        return TrialStore(path)
    from enroll.store import default_store_dir

    state = SiteState(config.enroll.store_dir or default_store_dir())
    try:
        return SiteTrialStore(path, state, config.site.kiosk_id)
    except BaseException:
        state.close()
        raise


def site_session(trials: list[dict[str, Any]]) -> tuple[TrialSession, dict[str, Any]]:
    """One session of every kiosk's trials (as :meth:`Registry.trials` returns them),
    and what the report should say about where they came from."""
    participants: dict[str, Participant] = {}
    results = []
    thresholds: collections.Counter[float] = collections.Counter()
    shares: collections.Counter[float] = collections.Counter()
    durations: collections.Counter[float] = collections.Counter()
    per_kiosk: collections.Counter[str] = collections.Counter()
    for trial in trials:
        participant = Participant.from_code(trial["participant"], trial["enrolled"])
        participants.setdefault(participant.name, participant)
        session = trial["session"] or {}
        thresholds[session.get("threshold", 0.5)] += 1
        shares[session.get("min_share", 0.5)] += 1
        durations[session.get("duration", trial["duration"])] += 1
        per_kiosk[trial["kiosk_id"]] += 1
        frames = tuple(
            FrameDecision(
                t=t,
                face=face,
                best=best,
                confidence=confidence,
                threshold=threshold,
                accepted=accepted,
                live=live,
            )
            for t, face, best, confidence, threshold, accepted, live in trial["frames"]
        )
        results.append(
            TrialResult(
                participant=participant,
                started_at=trial["started_at"],
                duration=trial["duration"],
                frames=frames,
                answer=trial["answer"],
                outcome=Outcome(trial["outcome"]),
                misidentified=trial["misidentified"],
                source=f"{trial['kiosk_id']}: {trial['source']}".rstrip(": "),
            )
        )

    def common(counter: collections.Counter[float], default: float) -> float:
        return counter.most_common(1)[0][0] if counter else default

    combined = TrialSession(
        duration=common(durations, 5.0),
        threshold=common(thresholds, 0.5),
        min_share=common(shares, 0.5),
        participants=list(participants.values()),
        results=results,
    )
    extra = {
        "site": True,
        "trials_per_kiosk": dict(sorted(per_kiosk.items())),
        "thresholds": sorted(thresholds),
    }
    return combined, extra


def site_report(config: KioskConfig, outputs: Outputs) -> tuple[dict[str, object], dict[str, int]]:
    """Every kiosk's trials this kiosk's role may read, as one session written to
    ``outputs`` (none: the summary alone), each file recorded with when the registry
    received the newest trial, so an erasure can make it again (:class:`SiteReports`);
    the summary and the trials per kiosk."""
    from kiosk.setup.site import require_site
    from kiosk.site.connect import connect, registry_errors
    from kiosk.site.registry import Registry
    from kiosk.trials.runs import write_outputs

    with registry_errors(), connect(require_site(config)) as conn:
        trials = Registry(conn).trials()
    if not trials:
        raise UserError("the site registry holds no trials this kiosk's role may read yet")
    session, extra, header = _site_report(config, trials)
    until = max(int(trial["received"]) for trial in trials)
    summary = write_outputs(outputs, config, session, extra, header, site_until=until)
    return summary, dict(extra["trials_per_kiosk"])


def _site_report(
    config: KioskConfig, trials: list[dict[str, Any]]
) -> tuple[TrialSession, dict[str, Any], ReportHeader]:
    """What a site report of ``trials`` shows: one session, its notes, its header."""
    from kiosk.trials.report import ReportHeader
    from kiosk.trials.runs import session_origin

    session, extra = site_session(trials)
    per_kiosk = dict(extra["trials_per_kiosk"])
    header = ReportHeader(
        label="every kiosk's trials",
        created_at=min(trial["started_at"] for trial in trials),
        site=session_origin(config)["site"],
        kiosk=", ".join(f"{kiosk} ({count})" for kiosk, count in per_kiosk.items()),
        operator="(each kiosk's)",
        recognizer=", ".join(
            sorted({str((t["session"] or {}).get("recognizer", "")) for t in trials} - {""})
        ),
    )
    return session, extra, header


class SiteReports:
    """Makes the site reports again for the erasure of the person ``uid`` (see
    kiosk/trials/exports.py), from the registry's trials, which its erasure anonymised."""

    def __init__(self, config: KioskConfig, uid: str) -> None:
        self.config = config
        self.uid = uid

    def remake(self, record: ReportRecord, store: TrialStore, digest: str, to: Path) -> bool:
        """Write the site report ``record`` again (to ``to``), of the trials it held,
        recorded in ``store``; False, writing nothing, when that cannot be: the registry
        unreachable or without the person's tombstone (not erased there yet, or refused:
        an erasure at a door), or its trials still naming them (by ``digest``)."""
        from kiosk.trials.exports import names_in
        from kiosk.trials.runs import Outputs, write_outputs

        assert record.site_until is not None and record.target_fpr is not None
        trials = self._erased_trials(record.site_until)
        if not trials:
            return False
        session, extra, header = _site_report(self.config, trials)
        if digest in names_in([session]):
            return False
        field = {"json": "json", "csv": "csv", "html": "report"}[record.kind]
        outputs = Outputs(**{field: to}, target_fpr=record.target_fpr)
        write_outputs(
            outputs, self.config, session, extra, header, site_until=record.site_until, store=store
        )
        return True

    def _erased_trials(self, until: int) -> list[dict[str, Any]] | None:
        """The trials the registry had received by ``until``; None unless it erased the
        person (or when it cannot be reached)."""
        from kiosk.site.connect import connect, registry_errors
        from kiosk.site.registry import Registry

        if self.config.site is None:
            return None
        try:
            with registry_errors(), connect(self.config.site) as conn:
                registry = Registry(conn)
                if not registry.erased(self.uid):
                    return None
                return registry.trials(received_by=until)
        except UserError as error:
            log.warning("a site report cannot be made again, so it is removed: %s", error)
            return None
