"""The kiosk's own site state: one SQLite file (WAL, ``synchronous=FULL``) beside its
people store, so the replica and its cursor always travel together (a store that is
replaced by an empty one starts again from cursor 0).

- ``sync_state``: the registry's site id, the cursor (the last change applied), when
  the last sync succeeded, and the bundle version received.
- ``outbox``: pushes waiting for the registry, each with its idempotency key. An entry
  is removed only after the registry has committed it, so a crash or a lost connection
  at any point leads to a retry of the same key, which the registry ignores if it has
  it already: nothing is lost, nothing is counted twice. An entry the registry refuses
  for good (a name already taken, a role without the privilege) is kept as
  ``rejected`` with the reason, for `kiosk site status`, and never pushed again; a
  refused erasure also keeps the person out of the replica (:meth:`SiteState.erased_here`).
- ``events_file``/``events_offset`` in ``sync_state``: how far the door event log has
  been pushed (kiosk/site/events.py).
- ``shared_embeddings``: the (person, embedder key) embeddings known to be in the
  registry, so an enrolling kiosk shares each one it computes once.
- ``bundle_people``: which person id each name of the received CLIP bundle was trained
  on, so a name reused after an erasure is never given to the erased face.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from models.errors import UserError
from models.io import immediate_transaction, private_db

STATE_FILE = "site.db"

# Pushed in this order: an erasure overtakes everything queued before it.
PRIORITY = {"delete": 0, "rename": 1, "person": 2, "trial": 3}

SCHEMA = """
CREATE TABLE IF NOT EXISTS sync_state (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    site_id TEXT,
    cursor INTEGER NOT NULL DEFAULT 0,
    last_sync TEXT,
    bundle_version INTEGER,
    last_error TEXT NOT NULL DEFAULT '',
    events_file TEXT,
    events_offset INTEGER NOT NULL DEFAULT 0
);
INSERT OR IGNORE INTO sync_state (id) VALUES (1);
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    key TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL,
    priority INTEGER NOT NULL,
    person_uid TEXT,
    payload BLOB NOT NULL,
    created_at TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    state TEXT NOT NULL DEFAULT 'queued' CHECK (state IN ('queued', 'rejected')),
    error TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS outbox_order ON outbox (state, priority, id);
CREATE TABLE IF NOT EXISTS bundle_people (name_key TEXT PRIMARY KEY, uid TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS shared_embeddings (
    uid TEXT NOT NULL, model TEXT NOT NULL, PRIMARY KEY (uid, model)
);
"""


@dataclass(frozen=True)
class SyncState:
    site_id: str | None
    cursor: int
    last_sync: datetime | None
    bundle_version: int | None
    last_error: str


@dataclass(frozen=True)
class Pending:
    id: int
    key: str
    kind: str
    person_uid: str | None
    payload: bytes
    attempts: int


class SiteState:
    """The sync cursor and the outbox. Safe to share between threads of one process and
    between processes (SQLite's locking); every write is its own transaction."""

    def __init__(self, directory: Path) -> None:
        self.path = Path(directory) / STATE_FILE
        self._lock = threading.Lock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(  # 0600: the outbox holds people's crops
                private_db(self.path), isolation_level=None, check_same_thread=False, timeout=30.0
            )
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute("PRAGMA secure_delete=ON")  # a dropped crop or name is zeroed
            self._db.executescript(SCHEMA)
        except sqlite3.Error as error:
            raise UserError(f"cannot open the site state {self.path}: {error}") from error

    def close(self) -> None:
        self._db.close()

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock, immediate_transaction(self._db) as db:
            yield db

    # -- the cursor ----------------------------------------------------------------------

    def sync_state(self) -> SyncState:
        with self._lock:
            row = self._db.execute(
                "SELECT site_id, cursor, last_sync, bundle_version, last_error FROM sync_state"
            ).fetchone()
        site_id, cursor, last_sync, bundle, error = row
        return SyncState(
            site_id,
            int(cursor),
            datetime.fromisoformat(last_sync) if last_sync else None,
            None if bundle is None else int(bundle),
            error,
        )

    def reset(self, site_id: str) -> None:
        """A new registry (or the first sync): start again from cursor 0."""
        with self._transaction() as db:
            db.execute(
                "UPDATE sync_state SET site_id = ?, cursor = 0, bundle_version = NULL",
                (site_id,),
            )
            db.execute("DELETE FROM bundle_people")
            db.execute("DELETE FROM shared_embeddings")

    def advance(self, cursor: int) -> None:
        with self._transaction() as db:
            db.execute("UPDATE sync_state SET cursor = max(cursor, ?)", (cursor,))

    def synced(self, at: datetime | None = None) -> None:
        """A sync finished: the replica is as fresh as the registry at ``at``."""
        at = at or datetime.now(UTC)
        with self._transaction() as db:
            db.execute("UPDATE sync_state SET last_sync = ?, last_error = ''", (at.isoformat(),))

    def failed(self, error: str) -> None:
        with self._transaction() as db:
            db.execute("UPDATE sync_state SET last_error = ?", (error,))

    def received_bundle(self, version: int, people: dict[str, str]) -> None:
        with self._transaction() as db:
            db.execute("UPDATE sync_state SET bundle_version = ?", (version,))
            db.execute("DELETE FROM bundle_people")
            db.executemany("INSERT INTO bundle_people VALUES (?, ?)", list(people.items()))

    def events_pushed(self) -> tuple[str | None, int]:
        """The event log (its identity) and the byte offset pushed up to."""
        with self._lock:
            row = self._db.execute("SELECT events_file, events_offset FROM sync_state").fetchone()
        return row[0], int(row[1])

    def pushed_events(self, identity: str, offset: int) -> None:
        with self._transaction() as db:
            db.execute(
                "UPDATE sync_state SET events_file = ?, events_offset = ?", (identity, offset)
            )

    def shared_embeddings(self) -> set[tuple[str, str]]:
        with self._lock:
            return {
                (str(u), str(m)) for u, m in self._db.execute("SELECT * FROM shared_embeddings")
            }

    def embeddings_shared(self, pairs: list[tuple[str, str]]) -> None:
        with self._transaction() as db:
            db.executemany("INSERT OR IGNORE INTO shared_embeddings VALUES (?, ?)", pairs)

    def bundle_people(self) -> dict[str, str]:
        with self._lock:
            return dict(self._db.execute("SELECT name_key, uid FROM bundle_people").fetchall())

    # -- the outbox ----------------------------------------------------------------------

    def enqueue(self, key: str, kind: str, payload: bytes, person_uid: str | None = None) -> None:
        """Queue a push durably (fsynced before this returns); a key queued twice is kept
        once."""
        now = datetime.now(UTC).isoformat()
        with self._transaction() as db:
            db.execute(
                "INSERT OR IGNORE INTO outbox (key, kind, priority, person_uid, payload,"
                " created_at) VALUES (?, ?, ?, ?, ?, ?)",
                (key, kind, PRIORITY[kind], person_uid, payload, now),
            )

    def drop_person_writes(self, uid: str) -> int:
        """Forget the queued enrollment and renames of a person erased here (never pushed)."""
        with self._transaction() as db:
            cursor = db.execute(
                "DELETE FROM outbox WHERE person_uid = ? AND kind IN ('person', 'rename')",
                (uid,),
            )
            return cursor.rowcount

    def rewrite(self, kind: str, change: Callable[[bytes], bytes | None]) -> int:
        """Rewrite the payload of every push of ``kind`` held here, queued or refused,
        that ``change`` changes (None: left as it is), in one transaction; how many. The
        old payloads are not left in the write-ahead log."""
        with self._transaction() as db:
            rows = db.execute("SELECT id, payload FROM outbox WHERE kind = ?", (kind,)).fetchall()
            changed = [(new, i) for i, old in rows if (new := change(bytes(old))) is not None]
            db.executemany("UPDATE outbox SET payload = ? WHERE id = ?", changed)
        if changed:
            with self._lock:
                self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return len(changed)

    def pending(self, limit: int = 100) -> list[Pending]:
        with self._lock:
            rows = self._db.execute(
                "SELECT id, key, kind, person_uid, payload, attempts FROM outbox"
                " WHERE state = 'queued' ORDER BY priority, id LIMIT ?",
                (limit,),
            ).fetchall()
        return [Pending(int(i), k, kind, uid, bytes(p), int(a)) for i, k, kind, uid, p, a in rows]

    def queued(self, kind: str) -> list[Pending]:
        """Every queued push of one kind, oldest first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT id, key, kind, person_uid, payload, attempts FROM outbox"
                " WHERE state = 'queued' AND kind = ? ORDER BY id",
                (kind,),
            ).fetchall()
        return [Pending(int(i), k, kd, uid, bytes(p), int(a)) for i, k, kd, uid, p, a in rows]

    def pending_people(self) -> set[str]:
        """Person ids with an enrollment still queued (a replica keeps them)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT person_uid FROM outbox WHERE kind = 'person' AND state = 'queued'"
            ).fetchall()
        return {str(row[0]) for row in rows}

    def erased_here(self) -> set[str]:
        """Person ids this kiosk erased whose erasure is still queued or was refused (a
        door's role may not delete): gone from the replica, never pulled back."""
        with self._lock:
            rows = self._db.execute(
                "SELECT person_uid FROM outbox WHERE kind = 'delete' AND person_uid IS NOT NULL"
            ).fetchall()
        return {str(row[0]) for row in rows}

    def done(self, entry_id: int) -> None:
        with self._transaction() as db:
            db.execute("DELETE FROM outbox WHERE id = ?", (entry_id,))

    def attempted(self, entry_id: int, error: str) -> None:
        with self._transaction() as db:
            db.execute(
                "UPDATE outbox SET attempts = attempts + 1, error = ? WHERE id = ?",
                (error, entry_id),
            )

    def reject(self, entry_id: int, error: str) -> None:
        with self._transaction() as db:
            db.execute(
                "UPDATE outbox SET state = 'rejected', attempts = attempts + 1, error = ?,"
                " payload = ? WHERE id = ?",
                (error, _without_biometrics(self._db, entry_id), entry_id),
            )

    def counts(self) -> dict[str, int]:
        with self._lock:
            rows = self._db.execute("SELECT state, COUNT(*) FROM outbox GROUP BY state")
            found = {str(state): int(n) for state, n in rows}
        return {"queued": found.get("queued", 0), "rejected": found.get("rejected", 0)}

    def rejected(self) -> list[tuple[str, str, str]]:
        """(kind, person id or '', reason) of every push refused for good."""
        with self._lock:
            rows = self._db.execute(
                "SELECT kind, coalesce(person_uid, ''), error FROM outbox"
                " WHERE state = 'rejected' ORDER BY id"
            ).fetchall()
        return [(str(a), str(b), str(c)) for a, b, c in rows]


def _without_biometrics(db: sqlite3.Connection, entry_id: int) -> bytes:
    """A refused enrollment keeps its reason and name, not its crops."""
    row = db.execute("SELECT kind, payload FROM outbox WHERE id = ?", (entry_id,)).fetchone()
    if row is None or row[0] != "person":
        return bytes(row[1]) if row is not None else b""
    data = json.loads(bytes(row[1]))
    data["photos"] = []
    data["embeddings"] = {}
    return json.dumps(data).encode("utf-8")
