"""Trial sessions in SQLite (WAL): every trial and every frame decision, as they happen.

A trial is one transaction: its row and each frame are inserted as the frames arrive and
committed together when the trial ends. A crash or power cut therefore loses at most the
trial in progress; every finished trial is intact (``synchronous=FULL``). Sessions are
resumed with :meth:`TrialStore.load_session`.

The store also records every report file of trials the kiosk wrote (``reports``: see
kiosk/trials/exports.py), so that an erasure finds them.

The schema grows without a version number: a table added later is made by
``CREATE TABLE IF NOT EXISTS`` and a column by :data:`ADDED_COLUMNS`, when a database
made by an earlier version is opened.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

from kiosk.trials.rules import FrameDecision, Outcome, Participant, TrialResult
from kiosk.trials.session import TrialSession
from models.errors import UserError
from models.io import private_db, remove_stale_temps

SCHEMA = """
CREATE TABLE IF NOT EXISTS sessions (
    id INTEGER PRIMARY KEY,
    label TEXT NOT NULL,
    created_at REAL NOT NULL,
    duration REAL NOT NULL,
    threshold REAL NOT NULL,
    min_share REAL NOT NULL,
    recognizer TEXT NOT NULL DEFAULT '',
    site TEXT NOT NULL DEFAULT '',  -- where the trials ran, for the reports' header
    kiosk TEXT NOT NULL DEFAULT '',
    operator TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS participants (
    session_id INTEGER NOT NULL REFERENCES sessions(id),
    position INTEGER NOT NULL,
    name TEXT NOT NULL,
    enrolled INTEGER NOT NULL,  -- Participant.code: 1 enrolled, 0 not enrolled, 2 attack
    PRIMARY KEY (session_id, name)
);
CREATE TABLE IF NOT EXISTS trials (
    id INTEGER PRIMARY KEY,
    session_id INTEGER NOT NULL REFERENCES sessions(id),
    participant TEXT NOT NULL,
    enrolled INTEGER NOT NULL,
    started_at REAL NOT NULL,
    duration REAL NOT NULL,
    finished INTEGER NOT NULL DEFAULT 0,
    answer TEXT,
    outcome TEXT,
    misidentified INTEGER NOT NULL DEFAULT 0,
    thumbnail BLOB,
    source TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS frames (
    trial_id INTEGER NOT NULL REFERENCES trials(id) ON DELETE CASCADE,
    t REAL NOT NULL,
    face INTEGER NOT NULL,
    best TEXT,
    confidence REAL,
    threshold REAL NOT NULL,
    accepted TEXT,
    live INTEGER,
    recognizer TEXT NOT NULL DEFAULT ''  -- e.g. "clip v3": what decided the frame
);
CREATE INDEX IF NOT EXISTS frames_by_trial ON frames (trial_id);
CREATE TABLE IF NOT EXISTS reports (  -- added after the first release: see the docstring
    path TEXT NOT NULL,  -- absolute, its folder resolved
    digest TEXT NOT NULL,  -- sha256 of the file as written: unchanged, it is the kiosk's
    kind TEXT NOT NULL,  -- json, csv or html
    device INTEGER NOT NULL,  -- st_dev of its folder: a drive not plugged in is not gone
    names TEXT NOT NULL,  -- JSON list: models.names.name_digest of every name it holds
    session_id INTEGER REFERENCES sessions(id),  -- made again from it; NULL: it cannot be
    last_trial INTEGER,  -- the last trial of the session it holds
    target_fpr REAL,
    written_at REAL NOT NULL,
    site_until INTEGER,  -- a site report: of the registry's trials received by then
    PRIMARY KEY (path, digest)
);
"""

BUSY_TRIAL_S = 90.0  # how long to wait for a trial in progress: one lasts 60 s at most

# Columns added after a table was first released: a database made before gets them on
# opening (ALTER TABLE ... ADD COLUMN), its existing rows reading back the default.
ADDED_COLUMNS = {
    ("frames", "recognizer"): "TEXT NOT NULL DEFAULT ''",
    ("sessions", "site"): "TEXT NOT NULL DEFAULT ''",
    ("sessions", "kiosk"): "TEXT NOT NULL DEFAULT ''",
    ("sessions", "operator"): "TEXT NOT NULL DEFAULT ''",
    ("reports", "site_until"): "INTEGER",
}


@dataclass(frozen=True)
class ReportRecord:
    """A report file of trials the kiosk wrote (see kiosk/trials/exports.py): where, its
    content's sha256, its kind (json, csv, html), the filesystem of its folder (st_dev),
    the digests of the names in it and, when it can be made again from this database,
    its session, the last trial it holds and its target FPR; a site report (`kiosk
    trials report --site`), made again from the site registry, has its target FPR and
    ``site_until``: when the registry received the newest trial it holds."""

    path: Path
    digest: str
    kind: str
    device: int
    names: frozenset[str]
    session_id: int | None = None
    last_trial: int | None = None
    target_fpr: float | None = None
    written_at: float = 0.0
    site_until: int | None = None  # microseconds since the epoch, the registry's clock


@dataclass(frozen=True)
class SessionInfo:
    id: int
    label: str
    created_at: float
    duration: float
    threshold: float
    min_share: float
    recognizer: str
    trials: int
    site: str = ""  # "" in sessions recorded before these were kept
    kiosk: str = ""
    operator: str = ""


class TrialStore:
    """One SQLite file holding any number of trial sessions. Single writer."""

    def __init__(self, path: Path, *, busy_timeout_s: float = 5.0) -> None:
        """``busy_timeout_s``: how long to wait for another process's trial in progress."""
        self.path = Path(path)
        self._infos: dict[int, SessionInfo] = {}  # the sessions as last read
        if str(path) != ":memory:":
            remove_stale_temps(self.path.parent)  # exports a killed run was writing
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # TrialSession serialises writes with its lock; the pipeline thread may add frames.
            # 0600: names and scores of the people tried (SQLite's journals follow its mode).
            memory = str(path) == ":memory:"
            self._db = sqlite3.connect(
                self.path if memory else private_db(self.path),
                isolation_level=None,
                check_same_thread=False,
                timeout=busy_timeout_s,
            )
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute("PRAGMA foreign_keys=ON")
            self._db.executescript(SCHEMA)
            self._migrate()
            # Never committed, so never present; kept as a guard against older files.
            self._db.execute("DELETE FROM trials WHERE finished = 0")
        except sqlite3.DatabaseError as error:
            raise UserError(f"cannot open the trials database {self.path}: {error}") from error

    def _migrate(self) -> None:
        """Bring a database made by an earlier version up to :data:`SCHEMA`."""
        for (table, column), definition in ADDED_COLUMNS.items():
            present = {row[1] for row in self._db.execute(f"PRAGMA table_info({table})")}
            if column not in present:
                self._db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {definition}")

    def close(self) -> None:
        """Close; a trial still in progress is rolled back (lost, as a crash would lose it)."""
        if self._db.in_transaction:
            self._db.rollback()
        self._db.close()

    def __enter__(self) -> TrialStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- writing -------------------------------------------------------------------------

    def _require_idle(self) -> None:
        if self._db.in_transaction:
            raise UserError("a trial is in progress; wait for it to end")

    def create_session(
        self,
        *,
        label: str,
        duration: float,
        threshold: float,
        min_share: float,
        recognizer: str = "",
        participants: list[Participant] | None = None,
        site: str = "",
        kiosk: str = "",
        operator: str = "",
    ) -> TrialSession:
        """A new session; ``site``, ``kiosk`` and ``operator`` say where and by whom it is
        run (the reports' header)."""
        self._require_idle()
        where = (site, kiosk, operator)
        with self._db:
            self._db.execute("BEGIN")
            cursor = self._db.execute(
                "INSERT INTO sessions (label, created_at, duration, threshold, min_share,"
                " recognizer, site, kiosk, operator) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (label, time.time(), duration, threshold, min_share, recognizer, *where),
            )
            session_id = int(cursor.lastrowid or 0)
        self.sessions()  # remembers the new session's record
        session = TrialSession(
            duration=duration,
            threshold=threshold,
            min_share=min_share,
            store=self,
            session_id=session_id,
            recognizer=recognizer,
        )
        for participant in participants or []:
            session.add_participant(participant.name, participant.enrolled, participant.attack)
        return session

    def add_participant(self, session_id: int, participant: Participant) -> None:
        self._require_idle()
        with self._db:
            self._db.execute("BEGIN")
            self._db.execute(
                "INSERT INTO participants (session_id, position, name, enrolled) VALUES"
                " (?, (SELECT COUNT(*) FROM participants WHERE session_id = ?), ?, ?)",
                (session_id, session_id, participant.name, participant.code),
            )

    def begin_trial(
        self, session_id: int, participant: Participant, started_at: float, duration: float
    ) -> int:
        """Open the trial's transaction; it stays open until :meth:`finish_trial`."""
        self._require_idle()
        self._db.execute("BEGIN IMMEDIATE")
        cursor = self._db.execute(
            "INSERT INTO trials (session_id, participant, enrolled, started_at, duration)"
            " VALUES (?, ?, ?, ?, ?)",
            (session_id, participant.name, participant.code, started_at, duration),
        )
        return int(cursor.lastrowid or 0)

    def add_frame(self, trial_id: int, frame: FrameDecision) -> None:
        self._db.execute(
            "INSERT INTO frames (trial_id, t, face, best, confidence, threshold, accepted, live,"
            " recognizer) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                trial_id,
                frame.t,
                int(frame.face),
                frame.best,
                frame.confidence,
                frame.threshold,
                frame.accepted,
                None if frame.live is None else int(frame.live),
                frame.recognizer,
            ),
        )

    def finish_trial(self, trial_id: int, result: TrialResult) -> None:
        self._db.execute(
            "UPDATE trials SET finished = 1, answer = ?, outcome = ?, misidentified = ?,"
            " thumbnail = ?, source = ? WHERE id = ?",
            (
                result.answer,
                result.outcome.value,
                int(result.misidentified),
                result.thumbnail,
                result.source,
                trial_id,
            ),
        )
        self._db.commit()

    def abandon_trial(self) -> None:
        """Roll back the trial in progress: it is never recorded (its participant was
        erased meanwhile)."""
        if self._db.in_transaction:
            self._db.rollback()

    def anonymise(self, name_digest: str, label: str) -> int:
        """Replace a person's name everywhere in the trials (roster, answers, frames) by
        ``label``, and every mention of it in the free text (the sessions' labels, the
        trials' sources, the names of attacks and strangers such as "photo of Ada":
        :func:`models.names.replace_mentions`), and drop the face
        thumbnails of their trials: an erasure that keeps the metrics. The person is known
        by :func:`models.names.name_digest`; how many trials were theirs, were answered
        with them or name them in their source. Waits for a trial in progress to end."""
        from models.names import name_digest as digest_of
        from models.names import replace_mentions

        self._db.create_function(
            "erased", 1, lambda n: n is not None and digest_of(n) == name_digest
        )
        self._db.create_function(
            "unnamed", 1, lambda text: replace_mentions(text, {name_digest}, label)
        )
        self._db.execute("PRAGMA secure_delete = ON")  # the old names are zeroed on disk
        try:
            with self._db:
                self._db.execute("BEGIN IMMEDIATE")
                touched = self._db.execute(
                    "SELECT COUNT(*) FROM trials WHERE erased(participant) OR erased(answer)"
                    " OR source != unnamed(source)"
                    " OR (enrolled != 1 AND participant != unnamed(participant))"
                    " OR id IN (SELECT trial_id FROM frames WHERE erased(best) OR erased(accepted))"
                ).fetchone()[0]
                self._db.execute("UPDATE trials SET thumbnail = NULL WHERE erased(participant)")
                for table, column in (
                    ("participants", "name"),
                    ("trials", "participant"),
                    ("trials", "answer"),
                    ("frames", "best"),
                    ("frames", "accepted"),
                ):
                    self._db.execute(
                        f"UPDATE {table} SET {column} = ? WHERE erased({column})", (label,)
                    )
                for table, column in (("sessions", "label"), ("trials", "source")):
                    self._db.execute(
                        f"UPDATE {table} SET {column} = unnamed({column})"
                        f" WHERE {column} != unnamed({column})"
                    )
                # An attack's or a stranger's name may mention them ("photo of Ada"); an
                # enrolled participant's is a name of its own, matched whole above.
                for table, column in (("participants", "name"), ("trials", "participant")):
                    self._db.execute(
                        f"UPDATE OR REPLACE {table} SET {column} = unnamed({column})"
                        f" WHERE enrolled != 1 AND {column} != unnamed({column})"
                    )
            self.checkpoint()  # nor in the write-ahead log
        except sqlite3.Error as error:
            raise UserError(f"cannot anonymise the trials in {self.path}: {error}") from error
        return int(touched)

    def checkpoint(self) -> None:
        """Empty the write-ahead log into the database: what was changed or deleted
        (``secure_delete``) is gone from it."""
        self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def record_report(self, record: ReportRecord) -> None:
        """Remember a report file about to be written (:mod:`kiosk.trials.exports`)."""
        self._require_idle()
        try:
            with self._db:
                self._db.execute("BEGIN IMMEDIATE")
                self._db.execute(
                    "INSERT OR REPLACE INTO reports (path, digest, kind, device, names,"
                    " session_id, last_trial, target_fpr, written_at, site_until)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        str(record.path),
                        record.digest,
                        record.kind,
                        record.device,
                        json.dumps(sorted(record.names)),
                        record.session_id,
                        record.last_trial,
                        record.target_fpr,
                        record.written_at or time.time(),
                        record.site_until,
                    ),
                )
        except sqlite3.Error as error:
            raise UserError(f"cannot record the report in {self.path}: {error}") from error

    def forget_reports(self, path: Path, *, keep: str | None = None) -> None:
        """Forget the records of the report file at ``path`` (but the one whose digest is
        ``keep``: the file as it is now)."""
        self._require_idle()
        try:
            with self._db:
                self._db.execute("BEGIN IMMEDIATE")
                self._db.execute(
                    "DELETE FROM reports WHERE path = ? AND digest != ?", (str(path), keep or "")
                )
        except sqlite3.Error as error:
            raise UserError(f"cannot update the reports in {self.path}: {error}") from error

    # -- reading -------------------------------------------------------------------------

    def reports(self) -> list[ReportRecord]:
        """Every report file recorded, in the order they were written."""
        rows = self._db.execute(
            "SELECT path, digest, kind, device, names, session_id, last_trial, target_fpr,"
            " written_at, site_until FROM reports ORDER BY written_at, path"
        ).fetchall()
        return [
            ReportRecord(Path(path), digest, kind, device, frozenset(json.loads(names)), *rest)
            for path, digest, kind, device, names, *rest in rows
        ]

    def sessions(self) -> list[SessionInfo]:
        rows = self._db.execute(
            "SELECT s.id, s.label, s.created_at, s.duration, s.threshold, s.min_share,"
            " s.recognizer, (SELECT COUNT(*) FROM trials t WHERE t.session_id = s.id"
            " AND t.finished), s.site, s.kiosk, s.operator FROM sessions s ORDER BY s.id"
        ).fetchall()
        infos = [SessionInfo(*row) for row in rows]
        self._infos = {info.id: info for info in infos}
        return infos

    def session_info(self, session_id: int) -> SessionInfo | None:
        """The session's record; after :meth:`close`, as it was last read (an export of a
        session loaded from a store since closed still has its header)."""
        with contextlib.suppress(sqlite3.ProgrammingError):  # closed: as last read
            self.sessions()
        return self._infos.get(session_id)

    def load_session(
        self, session_id: int | None = None, *, last_trial: int | None = None
    ) -> TrialSession:
        """Resume a session (the latest when ``session_id`` is None) with its finished
        trials (up to ``last_trial`` when given: the session as a report showed it)."""
        infos = self.sessions()
        if not infos:
            raise UserError(f"{self.path} holds no trial session yet")
        if session_id is None:
            info = infos[-1]
        else:
            matches = [i for i in infos if i.id == session_id]
            if not matches:
                known = ", ".join(str(i.id) for i in infos)
                raise UserError(f"no session {session_id} in {self.path}; sessions: {known}")
            info = matches[0]
        participants = [
            Participant.from_code(name, code)
            for name, code in self._db.execute(
                "SELECT name, enrolled FROM participants WHERE session_id = ? ORDER BY position",
                (info.id,),
            )
        ]
        return TrialSession(
            duration=info.duration,
            threshold=info.threshold,
            min_share=info.min_share,
            store=self,
            session_id=info.id,
            recognizer=info.recognizer,
            participants=participants,
            results=[
                result
                for result in self._results(info.id)
                if last_trial is None or (result.trial_id or 0) <= last_trial
            ],
        )

    def _results(self, session_id: int) -> list[TrialResult]:
        frames: dict[int, list[FrameDecision]] = {}
        for (
            trial_id,
            t,
            face,
            best,
            confidence,
            threshold,
            accepted,
            live,
            recognizer,
        ) in self._db.execute(
            "SELECT f.trial_id, f.t, f.face, f.best, f.confidence, f.threshold, f.accepted,"
            " f.live, f.recognizer FROM frames f JOIN trials t ON t.id = f.trial_id"
            " WHERE t.session_id = ? AND t.finished ORDER BY f.rowid",
            (session_id,),
        ):
            frames.setdefault(trial_id, []).append(
                FrameDecision(
                    t=t,
                    face=bool(face),
                    best=best,
                    confidence=confidence,
                    threshold=threshold,
                    accepted=accepted,
                    live=None if live is None else bool(live),
                    recognizer=recognizer,
                )
            )
        rows = self._db.execute(
            "SELECT id, participant, enrolled, started_at, duration, answer, outcome,"
            " misidentified, thumbnail, source FROM trials"
            " WHERE session_id = ? AND finished ORDER BY id",
            (session_id,),
        ).fetchall()
        return [
            TrialResult(
                participant=Participant.from_code(name, enrolled),
                started_at=started_at,
                duration=duration,
                frames=tuple(frames.get(trial_id, [])),
                answer=answer,
                outcome=Outcome(outcome),
                misidentified=bool(misidentified),
                thumbnail=thumbnail,
                trial_id=trial_id,
                source=source,
            )
            for (
                trial_id,
                name,
                enrolled,
                started_at,
                duration,
                answer,
                outcome,
                misidentified,
                thumbnail,
                source,
            ) in rows
        ]
