"""Every statement a kiosk runs against the site registry.

Writes that other kiosks must see (an enrollment, a rename, an erasure, a bundle) take
one advisory lock, draw the next number of the change sequence, write their rows and
the change row, and ``NOTIFY`` — all in one transaction. The lock makes the feed's
order the commit order, so a kiosk that has read every change up to ``seq`` can never
later find a smaller one committed behind its back: the cursor is exact.

Pushes are idempotent: an enrollment is keyed by the person's id, an erasure by the
tombstone of that id, an event and a trial by the UUID the kiosk gave them when it
queued them (``ON CONFLICT DO NOTHING``).

An erasure reaches every kiosk's door events (removed) and trials (the person's name,
and its mentions in the sessions' labels and the trials' sources, replaced by an opaque
label, so the site's metrics stay as they were). Pushes of events
and trials take the change lock shared, so they and an erasure are ordered: a trial or
an event of a person erased before it arrives is stored anonymised, or not at all.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from kiosk.live.events import logged_person
from kiosk.site.connect import CHANNEL, SiteRefused
from kiosk.site.schema import CHANGE_LOCK
from models.names import (
    erased_label,
    name_digest,
    name_key,
    relabel_mentions,
    replace_mentions,
)

if TYPE_CHECKING:
    from cryptography.fernet import Fernet

log = logging.getLogger(__name__)

# Where a trial holds people's names, in the registry: (table, column).
TRIAL_NAMES = (
    ("trials", "participant"),
    ("trials", "answer"),
    ("trial_frames", "best"),
    ("trial_frames", "accepted"),
)


@dataclass(frozen=True)
class PersonRecord:
    """A person as the registry holds them: crops as PNG bytes, embeddings per embedder
    key as raw float32 bytes (one per crop, in order)."""

    uid: str
    name: str
    external_id: str | None
    created_at: str  # ISO 8601
    consent_version: str
    consent_at: str
    retain_until: str
    photos: list[tuple[str, bytes]]  # (pose, PNG)
    embeddings: dict[str, list[bytes]] = field(default_factory=dict)

    def to_json(self) -> bytes:
        data = asdict(self)
        data["photos"] = [[pose, _b64(png)] for pose, png in self.photos]
        data["embeddings"] = {k: [_b64(v) for v in vs] for k, vs in self.embeddings.items()}
        return json.dumps(data).encode("utf-8")

    @classmethod
    def from_json(cls, payload: bytes) -> PersonRecord:
        data = json.loads(payload)
        data["photos"] = [(pose, base64.b64decode(png)) for pose, png in data["photos"]]
        data["embeddings"] = {
            k: [base64.b64decode(v) for v in vs] for k, vs in data["embeddings"].items()
        }
        return cls(**data)


@dataclass(frozen=True)
class Change:
    seq: int
    kind: str  # person, rename, delete, bundle
    person_uid: str | None
    bundle_version: int | None


@dataclass(frozen=True)
class Tombstone:
    uid: str
    seq: int
    label: str | None  # what the person's trials were renamed to (None: before schema 2)


@dataclass(frozen=True)
class Bundle:
    version: int
    sha256: str
    data: bytes
    people: dict[str, str]  # name key -> person id


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def renamed_trial(
    trial: dict[str, Any],
    rename: Callable[[str], str],
    unname: Callable[[str], str] = lambda text: text,
) -> dict[str, Any]:
    """A pushed trial (kiosk/trials/site.py's payload) with every person's name in it,
    the participant's, the answer's and each frame's best and accepted name, passed
    through ``rename``, and its free text, the session's label, the trial's source and
    the name of a participant not enrolled (an attack's: "photo of Ada"), through
    ``unname``."""

    def one(name: Any) -> Any:
        return rename(name) if isinstance(name, str) else name

    frames = [
        [t, face, one(best), confidence, threshold, one(accepted), live]
        for t, face, best, confidence, threshold, accepted, live in trial["frames"]
    ]
    participant = one(trial["participant"])
    if trial.get("enrolled") != 1 and isinstance(participant, str):
        participant = unname(participant)  # an attack's or a stranger's: "photo of Ada"
    return {
        **trial,
        "session": {**trial["session"], "label": unname(trial["session"]["label"])},
        "participant": participant,
        "answer": one(trial["answer"]),
        "source": unname(trial["source"]),
        "frames": frames,
    }


def trial_names(trial: dict[str, Any]) -> set[str]:
    """Every name a pushed trial holds."""
    names: set[str] = set()

    def note(name: str) -> str:
        names.add(name)
        return name

    renamed_trial(trial, note)
    return names


class Registry:
    """The registry over one open psycopg connection (not autocommit)."""

    def __init__(self, conn: Any, sealer: Fernet | None = None) -> None:
        self.conn = conn
        self._fernet = sealer

    def _transaction(self) -> Any:
        """A transaction of its own: never a savepoint inside an implicit transaction
        that a read left open, whose commit would then never come."""
        from psycopg import pq

        if self.conn.info.transaction_status != pq.TransactionStatus.IDLE:
            self.conn.rollback()
        return self.conn.transaction()

    def _seal(self, data: bytes) -> bytes:
        return self._fernet.encrypt(data) if self._fernet is not None else data

    def _open(self, data: bytes) -> bytes:
        if self._fernet is None:
            return data
        from cryptography.fernet import InvalidToken

        try:
            return self._fernet.decrypt(data)
        except InvalidToken:
            raise SiteRefused(
                "the registry's crops cannot be decrypted with this kiosk's key: every kiosk "
                "of an encrypted site needs the same $KIOSK_STORE_KEY"
            ) from None

    # -- reading -------------------------------------------------------------------------

    def site_id(self) -> str:
        return str(
            self.conn.execute("SELECT value FROM site_meta WHERE key = 'site_id'").fetchone()[0]
        )

    def role(self) -> str:
        return str(self.conn.execute("SELECT current_user").fetchone()[0])

    def tombstones_after(self, cursor: int) -> list[Tombstone]:
        rows = self.conn.execute(
            "SELECT person_uid, seq, label FROM tombstones WHERE seq > %s ORDER BY seq",
            (cursor,),
        ).fetchall()
        return [Tombstone(str(uid), int(seq), label) for uid, seq, label in rows]

    def changes_after(self, cursor: int, limit: int = 200) -> list[Change]:
        rows = self.conn.execute(
            "SELECT seq, kind, person_uid, bundle_version FROM changes WHERE seq > %s"
            " ORDER BY seq LIMIT %s",
            (cursor, limit),
        ).fetchall()
        return [Change(int(s), k, u, None if b is None else int(b)) for s, k, u, b in rows]

    def erased(self, uid: str) -> bool:
        """Whether the registry erased this person (holds their tombstone)."""
        found = self.conn.execute("SELECT 1 FROM tombstones WHERE person_uid = %s", (uid,))
        return found.fetchone() is not None

    def last_seq(self) -> int:
        return int(self.conn.execute("SELECT coalesce(max(seq), 0) FROM changes").fetchone()[0])

    def people_uids(self) -> set[str]:
        return {str(r[0]) for r in self.conn.execute("SELECT uid FROM people")}

    def names(self) -> dict[str, str]:
        """Person id -> current name, of everyone in the registry."""
        return {str(u): str(n) for u, n in self.conn.execute("SELECT uid, name FROM people")}

    def people(self, uids: Sequence[str]) -> list[PersonRecord]:
        """The records of these people (those not erased), crops and embeddings included."""
        if not uids:
            return []
        rows = self.conn.execute(
            "SELECT uid, name, external_id, created_at, consent_version, consent_at,"
            " retain_until FROM people WHERE uid = ANY(%s)",
            (list(uids),),
        ).fetchall()
        photos: dict[str, list[tuple[str, bytes]]] = {}
        for uid, pose, crop, digest in self.conn.execute(
            "SELECT person_uid, pose, crop, sha256 FROM photos WHERE person_uid = ANY(%s)"
            " ORDER BY person_uid, idx",
            (list(uids),),
        ):
            png = self._open(bytes(crop))
            if sha256(png) != digest:
                raise SiteRefused(f"a crop of person {uid} in the registry fails its checksum")
            photos.setdefault(uid, []).append((pose, png))
        vectors: dict[str, dict[str, list[bytes]]] = {}
        for uid, model, vector in self.conn.execute(
            "SELECT person_uid, model, vector FROM embeddings WHERE person_uid = ANY(%s)"
            " ORDER BY person_uid, model, idx",
            (list(uids),),
        ):
            vectors.setdefault(uid, {}).setdefault(model, []).append(self._open(bytes(vector)))
        return [
            PersonRecord(
                uid=uid,
                name=name,
                external_id=external,
                created_at=created.isoformat(),
                consent_version=version,
                consent_at=consent_at.isoformat(),
                retain_until=retain.isoformat(),
                photos=photos.get(uid, []),
                embeddings={
                    m: v
                    for m, v in vectors.get(uid, {}).items()
                    if len(v) == len(photos.get(uid, []))
                },
            )
            for uid, name, external, created, version, consent_at, retain in rows
        ]

    def bundle(self, version: int) -> Bundle | None:
        row = self.conn.execute(
            "SELECT version, sha256, data, people FROM bundles WHERE version = %s", (version,)
        ).fetchone()
        if row is None:
            return None
        version, digest, data, people = row
        data = bytes(data)
        if sha256(data) != digest:
            raise SiteRefused(f"bundle version {version} in the registry fails its checksum")
        return Bundle(int(version), digest, data, dict(people))

    def latest_bundle_version(self) -> int | None:
        row = self.conn.execute("SELECT max(version) FROM bundles").fetchone()
        return None if row[0] is None else int(row[0])

    # -- the change feed -----------------------------------------------------------------

    def _next_change(self, kind: str, uid: str | None, bundle: int | None = None) -> int:
        """Inside a transaction: take the change lock, draw and record the next change."""
        self.conn.execute("SELECT pg_advisory_xact_lock(%s)", (CHANGE_LOCK,))
        seq = int(self.conn.execute("SELECT nextval('change_seq')").fetchone()[0])
        self.conn.execute(
            "INSERT INTO changes (seq, kind, person_uid, bundle_version) VALUES (%s, %s, %s, %s)",
            (seq, kind, uid, bundle),
        )
        self.conn.execute("SELECT pg_notify(%s, %s)", (CHANNEL, str(seq)))
        return seq

    def add_person(self, person: PersonRecord) -> bool:
        """Enroll; False if the registry has this person already (a retried push)."""
        with self._transaction():
            self.conn.execute("SELECT pg_advisory_xact_lock(%s)", (CHANGE_LOCK,))
            uid = person.uid
            if self.conn.execute("SELECT 1 FROM people WHERE uid = %s", (uid,)).fetchone():
                return False
            if self.conn.execute(
                "SELECT 1 FROM tombstones WHERE person_uid = %s", (uid,)
            ).fetchone():
                raise SiteRefused(f"person {uid} was erased from the site; not enrolled again")
            key = name_key(person.name)
            if self.conn.execute("SELECT 1 FROM people WHERE name_key = %s", (key,)).fetchone():
                raise SiteRefused(
                    f"a person named {person.name!r} is already enrolled on this site; "
                    "enroll again under another name"
                )
            seq = self._next_change("person", uid)
            self.conn.execute(
                "INSERT INTO people (uid, name, name_key, external_id, created_at,"
                " consent_version, consent_at, retain_until, seq)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
                (
                    uid,
                    person.name,
                    key,
                    person.external_id,
                    person.created_at,
                    person.consent_version,
                    person.consent_at,
                    person.retain_until,
                    seq,
                ),
            )
            with self.conn.cursor() as cursor:
                cursor.executemany(
                    "INSERT INTO photos (person_uid, idx, pose, crop, sha256)"
                    " VALUES (%s, %s, %s, %s, %s)",
                    [
                        (uid, i, pose, self._seal(png), sha256(png))
                        for i, (pose, png) in enumerate(person.photos)
                    ],
                )
                cursor.executemany(
                    "INSERT INTO embeddings (person_uid, idx, model, vector)"
                    " VALUES (%s, %s, %s, %s)",
                    [
                        (uid, i, model, self._seal(vector))
                        for model, vectors in person.embeddings.items()
                        if len(vectors) == len(person.photos)
                        for i, vector in enumerate(vectors)
                    ],
                )
        return True

    def add_embeddings(self, uid: str, model: str, vectors: Sequence[bytes]) -> bool:
        """Embeddings computed after the enrollment (one per crop, in order); False when
        the person is gone, the count is wrong, or the registry has them already."""
        with self._transaction():
            self.conn.execute("SELECT pg_advisory_xact_lock(%s)", (CHANGE_LOCK,))
            crops = self.conn.execute(
                "SELECT count(*) FROM photos WHERE person_uid = %s", (uid,)
            ).fetchone()[0]
            have = self.conn.execute(
                "SELECT count(*) FROM embeddings WHERE person_uid = %s AND model = %s",
                (uid, model),
            ).fetchone()[0]
            if not crops or crops != len(vectors) or have:
                return False
            self._next_change("embeddings", uid)
            with self.conn.cursor() as cursor:
                cursor.executemany(
                    "INSERT INTO embeddings (person_uid, idx, model, vector)"
                    " VALUES (%s, %s, %s, %s)",
                    [(uid, i, model, self._seal(v)) for i, v in enumerate(vectors)],
                )
        return True

    def may_enroll(self) -> bool:
        return bool(
            self.conn.execute("SELECT has_table_privilege('embeddings', 'INSERT')").fetchone()[0]
        )

    def rename(self, uid: str, new: str) -> bool:
        """Rename; False if the person is gone or already has that name."""
        key = name_key(new)
        with self._transaction():
            self.conn.execute("SELECT pg_advisory_xact_lock(%s)", (CHANGE_LOCK,))
            row = self.conn.execute("SELECT name FROM people WHERE uid = %s", (uid,)).fetchone()
            if row is None or row[0] == new:
                return False
            clash = self.conn.execute(
                "SELECT uid FROM people WHERE name_key = %s AND uid <> %s", (key, uid)
            ).fetchone()
            if clash:
                raise SiteRefused(f"a person named {new!r} is already enrolled on this site")
            seq = self._next_change("rename", uid)
            self.conn.execute(
                "UPDATE people SET name = %s, name_key = %s, seq = %s WHERE uid = %s",
                (new, key, seq, uid),
            )
        return True

    def erase(self, uid: str, reason: str, label: str | None = None) -> int | None:
        """Erase a person everywhere, in one transaction: their rows, crops and embeddings,
        their id in the change feed and every kiosk's door events of theirs go; in every
        kiosk's trials their name becomes ``label`` (a fresh
        :func:`~models.names.erased_label` by default; a kiosk that erased them gave its
        queued trials one and sends it), so the metrics stay. A tombstone keeps the id
        and the label. The tombstone's change number, or None when the person was erased
        already."""
        with self._transaction():
            self.conn.execute("SELECT pg_advisory_xact_lock(%s)", (CHANGE_LOCK,))
            if self.conn.execute(
                "SELECT 1 FROM tombstones WHERE person_uid = %s", (uid,)
            ).fetchone():
                return None
            label = label or erased_label()
            row = self.conn.execute("SELECT name FROM people WHERE uid = %s", (uid,)).fetchone()
            name = None if row is None else str(row[0])
            seq = self._next_change("delete", uid)
            self.conn.execute(
                "INSERT INTO tombstones (person_uid, seq, reason, label) VALUES (%s, %s, %s, %s)",
                (uid, seq, reason, label),
            )
            trials = self._anonymise_trials(uid, name, label)
            # A folder recognizer's events name a person by a digest of the name.
            logged = [uid] if name is None else [uid, logged_person("", name)]
            events = self.conn.execute(
                "DELETE FROM events WHERE person_uid = ANY(%s::text[])", (logged,)
            ).rowcount
            self.conn.execute("DELETE FROM people WHERE uid = %s", (uid,))
            bundles = self._forget_in_bundles(uid)
            # The feed's rows need no id once erased: a kiosk behind skips them.
            self.conn.execute("UPDATE changes SET person_uid = NULL WHERE person_uid = %s", (uid,))
        log.info(
            "erased person %s: %d door events removed, %d trials anonymised, %d bundles pruned",
            uid,
            events,
            trials,
            bundles,
        )
        return seq

    def _forget_in_bundles(self, uid: str) -> int:
        """Inside the erasure's transaction: every published bundle that holds the person
        holds them no more (:meth:`~models.clip.bundle.RecognizerBundle.without`: their
        name, text embedding and the text weights learnt from them go), under the same
        version, so a kiosk that fetches it later never gets them (a kiosk that has it
        already drops them from its own copy as it applies the erasure). One this
        program cannot read is removed: the next `kiosk site train` publishes another.
        How many bundles changed."""
        from models.clip.bundle import BundleError, bundle_bytes, bundle_from_bytes

        rows = self.conn.execute(
            "DELETE FROM bundles b WHERE EXISTS"
            " (SELECT 1 FROM jsonb_each_text(b.people) p WHERE p.value = %s)"
            " RETURNING version, data, people, meta, created_at, created_by, seq",
            (uid,),
        ).fetchall()
        for version, data, people, meta, created_at, created_by, seq in rows:
            try:
                kept = bundle_bytes(
                    bundle_from_bytes(bytes(data), f"bundle {version}").without({uid})
                )
            except BundleError as error:
                log.warning("bundle version %s is removed from the registry: %s", version, error)
                continue
            self.conn.execute(
                "INSERT INTO bundles (version, sha256, size, data, people, meta, created_at,"
                " created_by, seq) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
                (
                    version,
                    sha256(kept),
                    len(kept),
                    kept,
                    json.dumps({key: held for key, held in people.items() if held != uid}),
                    json.dumps(meta),
                    created_at,
                    created_by,
                    seq,
                ),
            )
        return len(rows)

    def _anonymise_trials(self, uid: str, name: str | None, label: str) -> int:
        """Inside the erasure's transaction: in every kiosk's trials, the names that were
        ``uid``'s when each trial was pushed, and any name equal to the person's current
        one under :func:`~models.names.name_key` (as the kiosk's own trials are matched)
        that the trial does not say was someone else's, become ``label``; so does every
        mention of one of those names in the free text (the sessions' labels, the trials'
        sources: :func:`~models.names.replace_mentions`). How many trials."""
        known = self.conn.execute(
            "SELECT trial_key, name FROM trial_people WHERE person_uid = %s", (uid,)
        ).fetchall()
        names: list[str] = []
        if name is not None:
            key = name_key(name)
            union = " UNION ".join(f"SELECT {column} FROM {table}" for table, column in TRIAL_NAMES)
            names = [str(n) for (n,) in self.conn.execute(union) if n and name_key(n) == key]
        digests = {name_digest(n) for n in [name, *(n for _, n in known)] if n is not None}
        if not digests:
            return 0
        match = {
            "uid": uid,
            "names": names,
            "keys": [key for key, _ in known],
            "known": [known_name for _, known_name in known],
            "label": label,
        }
        touched: set[Any] = set()
        for table, column in TRIAL_NAMES:
            rows = self.conn.execute(
                f"UPDATE {table} t SET {column} = %(label)s"
                f" WHERE ({column}, trial_key) IN"
                " (SELECT * FROM unnest(%(known)s::text[], %(keys)s::uuid[]))"
                f" OR ({column} = ANY(%(names)s::text[]) AND NOT EXISTS (SELECT 1 FROM"
                " trial_people p WHERE p.trial_key = t.trial_key"
                f" AND p.name = t.{column} AND p.person_uid <> %(uid)s))"
                " RETURNING trial_key",
                match,
            ).fetchall()
            touched.update(row[0] for row in rows)
        self._unname("trial_sessions", "label", "session_key", digests, label)
        touched.update(self._unname("trials", "source", "trial_key", digests, label))
        # An attack's or a stranger's name may mention them ("photo of Ada").
        touched.update(
            self._unname("trials", "participant", "trial_key", digests, label, "enrolled <> 1")
        )
        self.conn.execute("DELETE FROM trial_people WHERE person_uid = %s", (uid,))
        return len(touched)

    def _unname(
        self,
        table: str,
        column: str,
        key: str,
        digests: set[str],
        label: str,
        where: str = "true",
    ) -> list[Any]:
        """Inside the erasure's transaction: every mention of a name of ``digests`` in
        the free text ``table.column`` (of the rows ``where`` holds for) becomes
        ``label``; the keys of the rows changed."""
        changed: list[Any] = []
        rows = self.conn.execute(f"SELECT DISTINCT {column} FROM {table} WHERE {where}")
        for (text,) in rows.fetchall():
            unnamed = replace_mentions(text, digests, label)
            if unnamed != text:
                rows = self.conn.execute(
                    f"UPDATE {table} SET {column} = %s WHERE {column} = %s AND {where}"
                    f" RETURNING {key}",
                    (unnamed, text),
                ).fetchall()
                changed += [row[0] for row in rows]
        return changed

    def expired(self, now: datetime | None = None) -> list[str]:
        rows = self.conn.execute(
            "SELECT uid FROM people WHERE retain_until < %s", (now or datetime.now(UTC),)
        ).fetchall()
        self.conn.rollback()
        return [str(r[0]) for r in rows]

    def publish_bundle(self, data: bytes, people: dict[str, str], meta: dict[str, Any]) -> int:
        """Publish a CLIP bundle (bytes, sha256, people's ids); its version. The two
        newest versions are kept."""
        with self._transaction():
            self.conn.execute("SELECT pg_advisory_xact_lock(%s)", (CHANGE_LOCK,))
            version = int(
                self.conn.execute("SELECT coalesce(max(version), 0) + 1 FROM bundles").fetchone()[0]
            )
            seq = self._next_change("bundle", None, version)
            self.conn.execute(
                "INSERT INTO bundles (version, sha256, size, data, people, meta, seq)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s)",
                (
                    version,
                    sha256(data),
                    len(data),
                    data,
                    json.dumps(people),
                    json.dumps(meta),
                    seq,
                ),
            )
            self.conn.execute("DELETE FROM bundles WHERE version < %s", (version - 1,))
        return version

    # -- pushes from a kiosk -------------------------------------------------------------

    def _pushing(self) -> None:
        """Inside a push's transaction: the change lock, shared with other pushes, so an
        erasure commits wholly before or wholly after the push."""
        self.conn.execute("SELECT pg_advisory_xact_lock_shared(%s)", (CHANGE_LOCK,))

    def add_events(self, events: Sequence[dict[str, Any]]) -> int:
        """Door events, each kept once by its key, but none of a person erased; how many
        were new."""
        if not events:
            return 0
        with self._transaction(), self.conn.cursor() as cursor:
            self._pushing()
            cursor.executemany(
                "INSERT INTO events (event_key, person_uid, confidence, at, track_id)"
                " SELECT %(key)s::uuid, %(person_uid)s::text, %(confidence)s::real,"
                " %(time)s::timestamptz, %(track_id)s::integer WHERE NOT EXISTS"
                " (SELECT 1 FROM tombstones WHERE person_uid = %(person_uid)s::text)"
                " ON CONFLICT DO NOTHING",
                list(events),
            )
            return max(cursor.rowcount, 0)

    def add_trial(self, trial: dict[str, Any], people: Mapping[str, str] | None = None) -> bool:
        """A finished trial, its session (once) and its frames; False if it is there.

        ``people``: the person id of each name in it that the kiosk knows (name -> id),
        kept so an erasure finds the trial even after a rename; a name of someone
        erased meanwhile, and its mentions in the session's label and the trial's
        source, are stored as their tombstone's label."""
        people = dict(people or {})
        with self._transaction():
            self._pushing()
            erased = dict(
                self.conn.execute(
                    "SELECT person_uid, coalesce(label, '') FROM tombstones"
                    " WHERE person_uid = ANY(%s::text[])",
                    (sorted(set(people.values())),),
                ).fetchall()
            )
            if erased:
                labels = {
                    name: erased[uid] or erased_label()
                    for name, uid in people.items()
                    if uid in erased
                }
                digests = {name_digest(name): label for name, label in labels.items()}
                trial = renamed_trial(
                    trial,
                    lambda name: labels.get(name, name),
                    lambda text: relabel_mentions(text, digests),
                )
                people = {n: u for n, u in people.items() if u not in erased}
            session = trial["session"]
            self.conn.execute(
                "INSERT INTO trial_sessions (session_key, label, created_at, duration,"
                " threshold, min_share, recognizer) VALUES (%s, %s, %s, %s, %s, %s, %s)"
                " ON CONFLICT DO NOTHING",
                (
                    session["key"],
                    session["label"],
                    session["created_at"],
                    session["duration"],
                    session["threshold"],
                    session["min_share"],
                    session["recognizer"],
                ),
            )
            cursor = self.conn.execute(
                "INSERT INTO trials (trial_key, session_key, participant, enrolled, started_at,"
                " duration, answer, outcome, misidentified, source)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
                (
                    trial["key"],
                    session["key"],
                    trial["participant"],
                    trial["enrolled"],
                    trial["started_at"],
                    trial["duration"],
                    trial["answer"],
                    trial["outcome"],
                    trial["misidentified"],
                    trial["source"],
                ),
            )
            if not cursor.rowcount:
                return False
            with self.conn.cursor() as rows:
                rows.executemany(
                    "INSERT INTO trial_frames (trial_key, idx, t, face, best, confidence,"
                    " threshold, accepted, live) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
                    [(trial["key"], i, *frame) for i, frame in enumerate(trial["frames"])],
                )
                names = trial_names(trial)
                rows.executemany(
                    "INSERT INTO trial_people (trial_key, name, person_uid) VALUES (%s, %s, %s)",
                    [(trial["key"], n, u) for n, u in sorted(people.items()) if n in names],
                )
        return True

    def heartbeat(self, status: dict[str, Any]) -> None:
        with self._transaction():
            self.conn.execute(
                "INSERT INTO kiosks (last_sync, cursor, bundle_version, queued, rejected,"
                " health, program, updated_at) VALUES (%(last_sync)s, %(cursor)s,"
                " %(bundle_version)s, %(queued)s, %(rejected)s, %(health)s, %(program)s, now())"
                " ON CONFLICT (kiosk_id) DO UPDATE SET last_sync = excluded.last_sync,"
                " cursor = excluded.cursor, bundle_version = excluded.bundle_version,"
                " queued = excluded.queued, rejected = excluded.rejected,"
                " health = excluded.health, program = excluded.program, updated_at = now()",
                status,
            )

    # -- site views ----------------------------------------------------------------------

    def kiosks(self) -> list[dict[str, Any]]:
        """Every kiosk's last report (only this kiosk's own, for a door role)."""
        with self._transaction():
            rows = self.conn.execute(
                "SELECT kiosk_id, last_sync, cursor, bundle_version, queued, rejected, health,"
                " program, updated_at, now() FROM kiosks ORDER BY kiosk_id"
            ).fetchall()
        keys = [
            "kiosk_id",
            "last_sync",
            "cursor",
            "bundle_version",
            "queued",
            "rejected",
            "health",
            "program",
            "updated_at",
            "now",
        ]
        return [dict(zip(keys, row, strict=True)) for row in rows]

    def trials(self, received_by: int | None = None) -> list[dict[str, Any]]:
        """Every finished trial this role may read, with its session and frames, and when
        the registry received it (``received``: microseconds since the epoch); only those
        received by ``received_by``, when given (what a report of the trials showed)."""
        received = "(extract(epoch FROM received_at) * 1000000)::bigint"
        with self._transaction():
            sessions = {
                row[0]: row
                for row in self.conn.execute(
                    "SELECT session_key, kiosk_id, label, created_at, duration, threshold,"
                    " min_share, recognizer FROM trial_sessions"
                )
            }
            frames: dict[Any, list[tuple[Any, ...]]] = {}
            for row in self.conn.execute(
                "SELECT trial_key, t, face, best, confidence, threshold, accepted, live"
                " FROM trial_frames ORDER BY trial_key, idx"
            ):
                frames.setdefault(row[0], []).append(tuple(row[1:]))
            trials = self.conn.execute(
                "SELECT trial_key, session_key, kiosk_id, participant, enrolled, started_at,"
                f" duration, answer, outcome, misidentified, source, {received} FROM trials"
                f" WHERE %(by)s::bigint IS NULL OR {received} <= %(by)s::bigint"
                " ORDER BY started_at, trial_key",
                {"by": received_by},
            ).fetchall()
        out = []
        for (
            key,
            session_key,
            kiosk,
            name,
            enrolled,
            started,
            duration,
            answer,
            outcome,
            mis,
            src,
            at,
        ) in trials:
            session = sessions.get(session_key)
            out.append(
                {
                    "key": str(key),
                    "kiosk_id": kiosk,
                    "participant": name,
                    "enrolled": int(enrolled),
                    "started_at": float(started),
                    "duration": float(duration),
                    "answer": answer,
                    "outcome": outcome,
                    "misidentified": bool(mis),
                    "source": src,
                    "received": int(at),
                    "session": None
                    if session is None
                    else {
                        "key": str(session[0]),
                        "label": session[2],
                        "threshold": float(session[5]),
                        "min_share": float(session[6]),
                        "duration": float(session[4]),
                        "recognizer": session[7],
                    },
                    "frames": frames.get(key, []),
                }
            )
        return out
