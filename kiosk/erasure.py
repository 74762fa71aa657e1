"""Erasure that reaches everything: what the kiosk removes of a person deleted or purged
from the people store, outside the store.

The store itself removes the person's row (and with it their data key), photos' rows,
embeddings (the CLIP features of the store-trained bundle among them) and photo files,
and journals the erasure (enroll/store.py). :func:`complete_erasures` then takes each
journal entry and removes, in an order that can be repeated after a crash:

- the person from the CLIP bundle file (:func:`kiosk.build.forget_in_bundle`, which also
  drops the text weights learnt from them) and the int8 image tower calibrated on the
  enrolled crops (made again from the people left, on its next load);
- their door events and thumbnails (:meth:`kiosk.live.events.EventLog.forget`);
- their name from the trial records, replaced by an opaque label ("erased person
  3f2a91c0") so the metrics stay as they were, with its mentions in the sessions'
  labels and the trials' clip paths (:func:`models.names.replace_mentions`), and their
  trials' face thumbnails; then
  from every trial report file the kiosk wrote that still names them
  (:func:`kiosk.trials.exports.erase_from_reports`): made again from the anonymised
  records (a site report from the registry's, once the registry erased them too), or
  removed when it cannot be; one changed since is no longer the kiosk's;
- their folder in every export the kiosk made (`kiosk people export`) that still exists;
- every cached feature of their photos under the user cache dir (by content digest: the
  stored photos' and the exported files');

and only then clears the entry. A step that fails (a trials database locked past its
timeout, an export or a report on a drive not plugged in) leaves the entry for the next
`kiosk people` command, which tries again; nothing here needs the store's key.

Every command that runs for long finishes the journal's erasures first
(:func:`finish_erasures`). A running door on a site also gets erasures while it runs:
its sync worker applies the site's erasures to the replica, which journals them, and
then asks an :class:`ErasureFinisher` to finish them on a thread of its own; so does
the trials console, whose roster also follows the store: an erased person leaves it,
and a trial of theirs in progress is dropped.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from kiosk import build
from kiosk.config import KioskConfig
from models.errors import UserError
from models.io import same_drive
from models.names import erased_label, name_digest

if TYPE_CHECKING:
    from enroll.store import Erasure, PeopleStore

log = logging.getLogger(__name__)

Log = Callable[[str], None]


@dataclass
class Erased:
    """What :func:`erase_traces` removed of one person."""

    uid: str
    bundle: bool = False  # the CLIP bundle named them, and no longer does
    events: int = 0  # door events removed (with their thumbnails)
    trials: int = 0  # trials anonymised
    reports: int = 0  # trial report files made again without them
    reports_removed: int = 0  # trial report files that could not be made again
    exports: int = 0  # export folders of theirs removed
    features: int = 0  # cached feature files removed
    problems: list[str] = field(default_factory=list)  # what could not be done (yet)
    exported_digests: set[str] = field(default_factory=set, repr=False)  # of removed files

    @property
    def complete(self) -> bool:
        return not self.problems

    def summary(self) -> str:
        parts = [
            f"{self.events} door events",
            f"{self.exports} export folders",
            f"{self.features} cached features",
            f"{self.reports_removed} trial reports",
        ]
        if self.bundle:
            parts.insert(0, "the recognizer bundle")
        anonymised = f"{self.trials} trials and {self.reports} trial reports"
        return f"removed {', '.join(parts)}; anonymised {anonymised}"


def complete_erasures(config: KioskConfig, store: PeopleStore) -> list[Erased]:
    """Finish every erasure the store's journal holds (see the module's docstring)."""
    done = []
    for erasure in store.pending_erasures():
        erased = erase_traces(config, erasure)
        if erased.complete:
            store.erasure_done(erasure.uid)
        done.append(erased)
    return done


def finish_erasures(config: KioskConfig) -> list[Erased]:
    """Open the people store (when there is one; on a single kiosk without its key,
    which nothing here needs), which purges whoever's retention period ended, and finish
    every erasure its journal holds: what a command that runs for long (the door, the
    wizard) does first."""
    from enroll.store import DB_NAME, default_store_dir
    from kiosk.site.replica import open_people

    root = (config.enroll.store_dir or default_store_dir()).expanduser()
    if not (root / DB_NAME).exists():
        return []
    # On a site, the replica: whoever its opening purges is queued for the registry too.
    with open_people(config, keyless=True) as store:
        done = complete_erasures(config, store)
    for erased in done:
        for problem in erased.problems:
            log.warning("person %s is not erased from %s yet", erased.uid, problem)
    return done


class ErasureFinisher:
    """Runs :func:`finish_erasures` on a thread of its own whenever asked: a running
    door's site sync asks after it applied an erasure, so the person's door events,
    row in the CLIP bundle, trials and cached features go within moments, never on the video loop
    nor on the sync's thread (a trial in progress may hold the trials database for a
    minute). Requests made while it runs are served by one more run; it never raises.
    ``on_finished`` is called on its thread after each run, finished or not (the trials
    console then shows its trials as the store holds them)."""

    def __init__(self, config: KioskConfig, on_finished: Callable[[], None] | None = None) -> None:
        self.config = config
        self.on_finished = on_finished
        self._lock = threading.Lock()
        self._requested = False
        self._thread: threading.Thread | None = None

    def request(self) -> None:
        """Finish the journal's erasures soon; returns at once."""
        with self._lock:
            self._requested = True
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="erasures", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        while True:
            with self._lock:
                if not self._requested:
                    self._thread = None
                    return
                self._requested = False
            try:
                finish_erasures(self.config)
            except UserError as error:  # e.g. the store busy: the next request or start
                log.warning("the erasures are not finished yet: %s", error)
            except Exception:  # never take the door down
                log.exception("finishing the erasures failed; the next request or start retries")
            try:
                if self.on_finished is not None:
                    self.on_finished()
            except Exception:
                log.exception("after finishing the erasures")


def erase_traces(config: KioskConfig, erasure: Erasure) -> Erased:
    """Remove one erased person from everything outside the people store; each step is
    tried even when another fails, and repeating it is harmless."""
    erased = Erased(erasure.uid)
    steps: list[tuple[str, Callable[[Erasure, Erased], None]]] = [
        ("the recognizer bundle", lambda e, r: _bundle(config, e, r)),
        ("the door events", lambda e, r: _events(config, e, r)),
        ("the trial records", lambda e, r: _trials(config, e, r)),
        ("the exports", _exports),  # before the caches: the exported files' digests
        ("the feature caches", _caches),
    ]
    for what, step in steps:
        try:
            step(erasure, erased)
        except (UserError, OSError) as error:
            erased.problems.append(f"{what}: {error}")
            log.warning("erasure of person %s: %s: %s", erasure.uid, what, error)
    return erased


def _bundle(config: KioskConfig, erasure: Erasure, erased: Erased) -> None:
    from models.clip.classifier import int8_towers

    path = build.bundle_path(config)
    bundle = build.current_bundle(path)
    if bundle is not None:
        # A bundle trained from a folder knows people by their folder's name.
        named = {
            key
            for key, name in zip(bundle.person_ids, bundle.people, strict=True)
            if key == name and erasure.matches(name)
        }
        erased.bundle = build.forget_in_bundle(path, {erasure.uid} | named)
    for tower in int8_towers(path.parent, f"{path.name}.tower-*"):
        tower.unlink(missing_ok=True)  # calibrated on the enrolled crops, theirs among them


def _events(config: KioskConfig, erasure: Erasure, erased: Erased) -> None:
    from kiosk.live.events import EVENT_LOG, THUMBNAILS, EventLog

    folder = build.events_dir(config)
    if not (folder / EVENT_LOG).exists() and not (folder / THUMBNAILS).is_dir():
        return
    events = EventLog(folder, retention_days=config.events.retention_days)
    erased.events = events.forget({erasure.uid}, {erasure.name_digest})


def _trials(config: KioskConfig, erasure: Erasure, erased: Erased) -> None:
    from kiosk.trials.exports import erase_from_reports, unreachable_error
    from kiosk.trials.runs import default_database
    from kiosk.trials.site import SiteReports
    from kiosk.trials.store import BUSY_TRIAL_S, TrialStore

    path = default_database(config).expanduser()
    if not path.exists():
        return
    # A site report is made again from the registry once it erased them (by their id).
    site = SiteReports(config, erasure.uid) if config.site is not None else None
    label = erased_label()
    with TrialStore(path, busy_timeout_s=BUSY_TRIAL_S) as trials:
        erased.trials = trials.anonymise(erasure.name_digest, label)
        reports = erase_from_reports(trials, erasure.name_digest, label, site)  # from the records
    erased.reports += reports.remade
    erased.reports_removed += reports.removed
    if reports.unreachable:
        raise unreachable_error(reports.unreachable)


def _exports(erasure: Erasure, erased: Erased) -> None:
    from enroll.store import EXPORT_MARKER

    for root, folder_digest, device in erasure.exports:
        if not root.exists() and same_drive(root.parent, device):
            continue  # the drive is there and the export is not: deleted by hand
        if not (root / EXPORT_MARKER).is_file():
            if root.exists():
                continue  # no longer an export of the kiosk's: not ours to touch
            raise UserError(
                f"the export {root} is not reachable (a drive not plugged in?): plug it "
                "in and run any `kiosk people` command, or delete the person's folder there"
            )
        for folder in sorted(root.iterdir()):
            ours = name_digest(folder.name) == folder_digest
            if ours and folder.is_dir() and not folder.is_symlink():
                erased.exported_digests.update(_digests(folder))
                shutil.rmtree(folder)
                erased.exports += 1


def _digests(folder: Path) -> set[str]:
    return {
        hashlib.sha256(path.read_bytes()).hexdigest()
        for path in folder.rglob("*")
        if path.is_file() and not path.is_symlink()
    }


def _caches(erasure: Erasure, erased: Erased) -> None:
    from models.paths import user_cache_dir
    from models.train.features import forget_features

    digests = set(erasure.photo_digests) | erased.exported_digests
    erased.features = forget_features(user_cache_dir(), digests)
