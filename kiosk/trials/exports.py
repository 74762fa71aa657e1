"""The report files of trials the kiosk writes, recorded so that an erasure reaches them.

Every report (`kiosk trials export|report|simulate` with ``--json``, ``--csv`` or
``--report``, `kiosk trials report --site`, the console's Export) is recorded in the
kiosk's trials database (``[trials] database``, the one an erasure anonymises) before
it is written (:class:`ReportLog`): its path, the sha256 of its content, the filesystem
of its folder, a digest of every name in it (:func:`models.names.name_digest`, never
the name; with those of every name its sessions' labels and its trials' sources may
mention) and, when it is one session of that database written as `kiosk trials export`
writes it, the session and the last trial it shows, which make it again (a site report:
when the registry received the newest trial it shows).

When a person is erased, after the trial records were anonymised,
:func:`erase_from_reports` takes every recorded report that names them:

- one that can be made again is: from the anonymised records, the same trials with the
  erased person under their opaque label, every figure as it was (the HTML's plots and
  thumbnails are drawn again too: their thumbnails are gone, the confusion matrix's
  labels are the opaque one);
- a site report (`kiosk trials report --site`) is made again from the site registry's
  trials it held, when the registry is reachable and has erased the person (holds
  their tombstone: their name in its trials is the opaque label too), and removed
  when it has not (offline, not yet, or refused: an erasure at a door) or its trials
  still name them (:class:`kiosk.trials.site.SiteReports`);
- one that cannot (its trials are not in that database: a simulation, a session of
  another ``--db``) is removed;
- one whose content changed since it was written is no longer the kiosk's: it is left
  as it is, and forgotten like one deleted by hand;
- one whose folder is not there, or is on another filesystem (a drive not plugged in),
  is a problem: the erasure stays pending and is tried again.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from kiosk.trials.report import ReportKind, export_csv, export_json, write_html_report
from kiosk.trials.session import TrialSession
from kiosk.trials.store import BUSY_TRIAL_S, ReportRecord, TrialStore
from models.errors import UserError
from models.io import PRIVATE_DIR, same_drive
from models.names import mention_digests, name_digest, replace_mentions

if TYPE_CHECKING:
    from kiosk.trials.site import SiteReports

log = logging.getLogger(__name__)

SUFFIXES: dict[str, ReportKind] = {".csv": "csv", ".json": "json", ".html": "html", ".htm": "html"}
KINDS: dict[str, ReportKind] = {"csv": "csv", "json": "json", "html": "html"}


def names_in(sessions: Sequence[TrialSession]) -> frozenset[str]:
    """The name digests of everyone the sessions name: their rosters, the participants
    of their trials, the answers and every frame's best match and accepted name; and of
    every name their free text may mention (the sessions' labels, the trials' sources,
    the names of attacks and strangers: :func:`models.names.mention_digests`)."""
    names: set[str] = set()
    texts: set[str] = set()
    for session in sessions:
        info = None
        if session.store is not None and session.session_id is not None:
            info = session.store.session_info(session.session_id)
        texts.add("" if info is None else info.label)
        names.update(participant.name for participant in session.participants)
        # An attack's or a stranger's name may mention someone ("photo of Ada").
        texts.update(p.name for p in session.participants if not p.enrolled)
        for result in session.results:
            names.update((result.participant.name, result.answer or ""))
            texts.add(result.source)
            if not result.participant.enrolled:
                texts.add(result.participant.name)
            for frame in result.frames:
                names.update((frame.best or "", frame.accepted or ""))
    mentioned = {digest for text in texts for digest in mention_digests(text)}
    return frozenset({name_digest(name) for name in names - {""}} | mentioned)


@dataclass
class ReportLog:
    """Records each report file of ``sessions`` written with it as ``recorder`` in the
    trials database ``database`` (or the open ``store``), before the file is written.
    ``remakeable``: the report is written as :func:`write_session_report` writes it, so
    one session of that database can make it again; ``site_until``: it is a site report,
    which the site registry's trials received by then make again (else an erasure
    removes it)."""

    database: Path
    sessions: Sequence[TrialSession]
    target_fpr: float | None = None
    remakeable: bool = False
    store: TrialStore | None = None
    site_until: int | None = None  # a site report of the trials received by then

    @contextlib.contextmanager
    def _opened(self) -> Iterator[TrialStore]:
        if self.store is not None:
            yield self.store
        else:
            with TrialStore(self.database, busy_timeout_s=BUSY_TRIAL_S) as store:
                yield store

    def _source(self) -> tuple[int | None, int | None]:
        """The session that makes the report again, and its last trial shown."""
        if not self.remakeable or self.target_fpr is None or len(self.sessions) != 1:
            return None, None
        session = self.sessions[0]
        store = session.store
        if store is None or session.session_id is None or not _same_file(store.path, self.database):
            return None, None
        return session.session_id, max((r.trial_id or 0 for r in session.results), default=0)

    @contextlib.contextmanager
    def writing(self, path: Path, kind: ReportKind, data: bytes) -> Iterator[None]:
        path.parent.mkdir(parents=True, exist_ok=True, mode=PRIVATE_DIR)
        where = path.parent.resolve() / path.name
        digest = hashlib.sha256(data).hexdigest()
        session_id, last_trial = self._source()
        record = ReportRecord(
            where,
            digest,
            kind,
            where.parent.stat().st_dev,
            names_in(self.sessions),
            session_id,
            last_trial,
            self.target_fpr,
            time.time(),
            self.site_until,
        )
        with self._opened() as store:
            store.record_report(record)  # before the file: a crash leaves a record, no file
            yield
            store.forget_reports(where, keep=digest)  # the file's earlier versions


def _same_file(path: Path, other: Path) -> bool:
    try:
        return path.resolve() == other.resolve()
    except OSError:
        return False


def write_session_report(
    kind: ReportKind,
    session: TrialSession,
    path: Path,
    *,
    target_fpr: float,
    recorder: ReportLog | None = None,
) -> None:
    """A session's report as `kiosk trials export` and the console's Export write it,
    and as an erasure makes it again."""
    if kind == "json":
        export_json(session, path, target_fpr=target_fpr, recorder=recorder)
    elif kind == "csv":
        export_csv(session, path, recorder=recorder)
    else:
        write_html_report(session, path, target_fpr=target_fpr, recorder=recorder)


@dataclass
class ReportsErased:
    """What :func:`erase_from_reports` did to the reports naming one person."""

    remade: int = 0  # made again from the anonymised records
    removed: int = 0  # could not be made again
    unreachable: list[Path] = field(default_factory=list)  # a drive not plugged in?


def erase_from_reports(
    store: TrialStore, digest: str, label: str, site: SiteReports | None = None
) -> ReportsErased:
    """Take the person (by :func:`models.names.name_digest`) out of every report file
    recorded in ``store``, whose trials are already anonymised (see the module); a
    file whose name mentions them ("ada_lovelace.json") is made again under a name with
    ``label`` instead. ``site``: what makes the
    site reports again (a kiosk of a site), else they are removed."""
    done = ReportsErased()
    records: dict[Path, list[ReportRecord]] = {}
    for record in store.reports():
        records.setdefault(record.path, []).append(record)
    for path, versions in records.items():
        if not any(digest in record.names for record in versions):
            continue
        if not path.is_file() or path.is_symlink():
            if path.exists() or path.is_symlink() or same_drive(path.parent, versions[-1].device):
                store.forget_reports(path)  # deleted by hand, or replaced: not ours now
            else:
                done.unreachable.append(path)
            continue
        try:
            content = hashlib.sha256(path.read_bytes()).hexdigest()
        except OSError as error:
            log.warning("cannot read the trial report %s: %s", path, error)
            done.unreachable.append(path)
            continue
        current = next((r for r in versions if r.digest == content), None)
        if current is None:
            log.warning("the trial report %s changed since it was written: left as it is", path)
            store.forget_reports(path)
            continue
        store.forget_reports(path, keep=content)
        if digest not in current.names:
            continue  # this version of the file does not name them
        to = _unnamed(path, digest, label)
        if current.session_id is None:
            remade = (
                current.site_until is not None and site and site.remake(current, store, digest, to)
            )
            if not remade:
                path.unlink()
                store.forget_reports(path)
                done.removed += 1
                continue
        else:
            session = store.load_session(current.session_id, last_trial=current.last_trial)
            fpr = current.target_fpr
            assert fpr is not None  # recorded with every session (ReportLog._source)
            again = ReportLog(store.path, [session], fpr, remakeable=True, store=store)
            write_session_report(KINDS[current.kind], session, to, target_fpr=fpr, recorder=again)
        if to != path:
            path.unlink()
            store.forget_reports(path)
        done.remade += 1
    store.checkpoint()  # the old records' name digests are gone from the write-ahead log
    return done


def _unnamed(path: Path, digest: str, label: str) -> Path:
    """Where the report at ``path`` is made again: under its own name, or when that
    mentions the person, under one with ``label`` instead, never over another file
    ("erased person 3f2a91c0 (2).csv" when that one is there)."""
    name = replace_mentions(path.name, {digest}, label)
    if name == path.name:
        return path
    stem, suffix = Path(name).stem, Path(name).suffix
    to, number = path.with_name(name), 1
    while to.exists() or to.is_symlink():
        number += 1
        to = path.with_name(f"{stem} ({number}){suffix}")
    return to


def unreachable_error(paths: Sequence[Path]) -> UserError:
    """What an erasure says of the reports it could not reach."""
    listed = ", ".join(str(path) for path in paths)
    return UserError(
        f"the trial report {listed} is not reachable (a drive not plugged in?): plug it "
        "in and run any `kiosk people` command (a folder deleted by hand: make it again)"
    )
