"""The kiosk's people store as a replica of the site registry, and who it may name.

:class:`ReplicaStore` is the ordinary :class:`~enroll.store.PeopleStore` (recognition
reads it exactly as on a single kiosk) whose own writes are also queued for the
registry. The queue entry is written first: a crash after it and before the local save
still reaches the registry, and the next pull brings the person back here. A purge of
the retention period (on opening, `kiosk people purge`) is a deletion like any other:
the person's name in the queued trials becomes an opaque label and their erasure is
queued, for the registry to erase them site-wide, or to refuse (a door's role may not
delete: they are gone from this replica only, and stay so). The sync
worker applies the registry's changes through the ``apply_*`` methods, which do not
queue anything.

:class:`ReplicaGate` is the :class:`~kiosk.live.holder.NamingPolicy` of a site kiosk. It
names nobody

- until the first sync attempt after start has ended (so a kiosk that was off during
  an erasure applies it before it names anyone, when the registry is reachable);
- when the last successful sync is older than ``[site] max_replica_age_h``;

and never a name whose person has been erased (the erasure is applied to the gate the
moment it is read, before the replica's rows are removed), nor a name that a CLIP
bundle learnt from a different person than the replica's current holder of that name.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from enroll.store import (
    Consent,
    NewPhoto,
    PeopleStore,
    Person,
    PhotoToStore,
    StagedPerson,
    encode_png,
    new_uid,
)
from kiosk.site.registry import PersonRecord, renamed_trial
from kiosk.site.state import SiteState
from models.errors import UserError
from models.names import erased_label, name_digest, name_key, replace_mentions

if TYPE_CHECKING:
    from kiosk.config import KioskConfig


def retain_until(consent: Consent, retention_days: int | None) -> datetime:
    days = retention_days if retention_days is not None else 365 * 100
    return consent.at + timedelta(days=days)


class ReplicaStore(PeopleStore):
    """A people store whose enrollments, renames and deletions also go to the registry."""

    def __init__(
        self,
        root: Path,
        state: SiteState,
        *,
        key: bytes | None = None,
        encrypt: bool = False,
        retention_days: int | None = None,
        wake: Callable[[], None] | None = None,
    ) -> None:
        self.site_state = state
        self.wake = wake or (lambda: None)
        super().__init__(root, key=key, encrypt=encrypt, retention_days=retention_days)

    def close(self) -> None:
        super().close()
        self.site_state.close()

    # -- writes made here: queued for the registry ---------------------------------------

    def add_person(
        self,
        name: str,
        photos: Sequence[PhotoToStore],
        consent: Consent,
        external_id: str | None = None,
        *,
        uid: str | None = None,
    ) -> Person:
        uid = uid or new_uid()
        pngs = [(photo.pose, encode_png(photo.crop)) for photo in photos]
        self._enqueue_person(uid, name, external_id, consent, pngs)
        try:
            person = super().add_person(name, photos, consent, external_id, uid=uid)
        except BaseException:
            self.site_state.drop_person_writes(uid)
            raise
        self.wake()
        return person

    def commit_staged(self, staged: Sequence[StagedPerson]) -> None:
        """An import: everyone queued for the registry first, then all committed here."""
        for person in staged:
            pngs = [(pose, self.staged_png(person, file)) for pose, file in person.aligned_files()]
            self._enqueue_person(person.uid, person.name, person.external_id, person.consent, pngs)
        try:
            super().commit_staged(staged)
        except BaseException:
            for person in staged:
                self.site_state.drop_person_writes(person.uid)
            raise
        self.wake()

    def _enqueue_person(
        self,
        uid: str,
        name: str,
        external_id: str | None,
        consent: Consent,
        pngs: list[tuple[str, bytes]],
    ) -> None:
        record = PersonRecord(
            uid=uid,
            name=name.strip(),
            external_id=external_id or None,
            created_at=datetime.now(UTC).isoformat(),
            consent_version=consent.version,
            consent_at=consent.at.isoformat(),
            retain_until=retain_until(consent, self.retention_days).isoformat(),
            photos=pngs,
        )
        self.site_state.enqueue(f"person:{uid}", "person", record.to_json(), uid)

    def rename(self, old: str, new: str) -> Person:
        uid = self.get(old).uid
        person = super().rename(old, new)
        payload = json.dumps({"uid": uid, "name": person.name}).encode("utf-8")
        self.site_state.enqueue(f"rename:{uid}:{uuid.uuid4().hex}", "rename", payload, uid)
        self.wake()
        return person

    def delete(self, name: str, reason: str = "deleted on request", action: str = "delete") -> str:
        label = erased_label()  # the registry renames their trials there alike
        person = self.find(name)
        if person is not None:
            self._anonymise_queued_trials(person.name, label)
        uid = super().delete(name, reason, action)
        self._queue_erasure(uid, reason, label)
        return uid

    def _queue_erasure(self, uid: str, reason: str, label: str) -> None:
        self.site_state.drop_person_writes(uid)  # an enrollment not pushed yet never will be
        payload = json.dumps({"uid": uid, "reason": reason, "label": label}).encode("utf-8")
        self.site_state.enqueue(f"delete:{uid}", "delete", payload, uid)
        self.wake()

    def _anonymise_queued_trials(self, name: str, label: str) -> int:
        """The trials queued here that hold ``name`` (under :func:`name_key`, as the
        kiosk's own trials are matched) or mention it in their label or source
        (:func:`~models.names.replace_mentions`) hold ``label`` instead, before anyone
        is erased: a trial pushed after the erasure never brings the name back to the
        registry."""
        key, digests = name_key(name), {name_digest(name)}

        def change(payload: bytes) -> bytes | None:
            try:
                trial = json.loads(payload)
                renamed = renamed_trial(
                    trial,
                    lambda n: label if name_key(n) == key else n,
                    lambda text: replace_mentions(text, digests, label),
                )
            except (ValueError, KeyError, TypeError):
                return None  # malformed: the sync worker refuses it
            return None if renamed == trial else json.dumps(renamed).encode("utf-8")

        return self.site_state.rewrite("trial", change)

    # -- what the registry holds: applied by the sync worker, never queued ---------------

    def record(self, person: Person) -> PersonRecord:
        """A person of this store as the registry would hold them (for an upload)."""
        records = self.photos(person.name)
        return PersonRecord(
            uid=person.uid,
            name=person.name,
            external_id=person.external_id,
            created_at=person.created_at.isoformat(),
            consent_version=person.consent.version,
            consent_at=person.consent.at.isoformat(),
            retain_until=retain_until(person.consent, self.retention_days).isoformat(),
            photos=[(r.pose, self.read_png(r)) for r in records],
            embeddings=self.cached_embeddings(person.uid),
        )

    def apply_person(self, record: PersonRecord) -> bool:
        """Add a person the registry holds (with their cached embeddings); False if here."""
        import cv2
        import numpy as np

        current = self.by_uid(record.uid)
        if current is not None:
            if current.name != record.name:
                self.apply_rename(record.uid, record.name)
            return False
        clash = self._holder_of(record.name)
        if clash is not None:  # enrolled here offline under a name the site gave first
            self.site_state.drop_person_writes(clash)
            super().delete_uid(clash, "the site enrolled this name first", "site-reject")
        photos = []
        for pose, png in record.photos:
            image = cv2.imdecode(np.frombuffer(png, dtype=np.uint8), cv2.IMREAD_COLOR)
            if image is None:
                raise UserError(f"a crop of person {record.uid} from the registry is unreadable")
            photos.append(NewPhoto(crop=np.asarray(image, dtype=np.uint8), pose=pose))
        consent = Consent(record.consent_version, datetime.fromisoformat(record.consent_at))
        super().add_person(record.name, photos, consent, record.external_id, uid=record.uid)
        for model, vectors in record.embeddings.items():
            self.cache_embeddings(record.uid, model, vectors)
        return True

    def apply_rename(self, uid: str, name: str) -> bool:
        """Give a person the registry's name for them; False when it changed nothing, or
        when a rename of theirs made here is still queued: that one stands until the
        registry has it (an older change pulled first never undoes it meanwhile)."""
        current = self.by_uid(uid)
        if current is None or current.name == name:
            return False
        if any(entry.person_uid == uid for entry in self.site_state.queued("rename")):
            return False
        clash = self._holder_of(name)
        if clash is not None and clash != uid:
            self.site_state.drop_person_writes(clash)
            super().delete_uid(clash, "the site gave this name to another person", "site-reject")
        super().rename(current.name, name)
        return True

    def apply_erasure(self, uid: str, label: str | None = None) -> bool:
        """Erase a person the site erased; whether they were here. Their name in the
        trials queued here becomes ``label`` (the tombstone's) first, so that a crash
        in between leaves the name to find on the next pull."""
        person = self.by_uid(uid)
        if person is not None:
            self._anonymise_queued_trials(person.name, label or erased_label())
        self.site_state.drop_person_writes(uid)
        return super().delete_uid(uid, "erased from the site", "site-erase")

    def reject_local(self, uid: str, reason: str) -> bool:
        """Remove a person enrolled here whose enrollment the registry refused."""
        return super().delete_uid(uid, f"refused by the site registry: {reason}", "site-reject")

    def _holder_of(self, name: str) -> str | None:
        person = self.find(name)
        return person.uid if person is not None else None


class ReplicaGate:
    """Who a site kiosk may name (see the module's docstring). Thread-safe; every answer
    is read from memory, so it costs nothing per frame."""

    def __init__(self, max_age: timedelta, last_sync: datetime | None = None) -> None:
        self.max_age = max_age
        self.last_sync = last_sync
        self.started = False  # the first sync attempt after start has ended
        self.cursor = 0
        self._lock = threading.Lock()
        self._names: dict[str, str] = {}  # name key -> uid, of the replica's people
        self._blocked: set[str] = set()  # erased uids
        self._bundle: dict[str, str] | None = None  # name key -> uid the bundle learnt

    def refusal(self, now: datetime | None = None) -> str:
        if not self.started:
            return "connecting to the site registry: naming nobody until the replica is checked"
        if self.last_sync is None:
            return "this kiosk has never synced with the site registry: naming nobody"
        age = (now or datetime.now(UTC)) - self.last_sync
        if age > self.max_age:
            hours = age.total_seconds() / 3600
            limit = self.max_age.total_seconds() / 3600
            return (
                f"the site replica is {hours:.1f} h old (limit {limit:g} h):"
                " naming nobody until the registry is reachable again"
            )
        return ""

    def may_name(self, name: str) -> bool:
        key = name_key(name)
        with self._lock:
            uid = self._names.get(key)
            if uid is None or uid in self._blocked:
                return False
            return self._bundle is None or self._bundle.get(key) == uid

    def uid_of(self, name: str) -> str | None:
        with self._lock:
            return self._names.get(name_key(name))

    def block(self, uids: Sequence[str]) -> None:
        """Erasures read from the registry: refused from now on, before anything else."""
        with self._lock:
            self._blocked.update(uids)

    def refresh(self, people: Sequence[Person]) -> None:
        names = {name_key(p.name): p.uid for p in people}
        with self._lock:
            self._names = names

    def use_bundle(self, people: dict[str, str] | None) -> None:
        """The recognizer is a site bundle that learnt these (name key -> uid); None: the
        recognizer is built from the replica itself."""
        with self._lock:
            self._bundle = dict(people) if people is not None else None

    def synced(self, at: datetime, cursor: int) -> None:
        self.last_sync = at
        self.cursor = cursor


def open_people(
    config: KioskConfig, store_dir: Path | None = None, *, keyless: bool = False
) -> PeopleStore:
    """The people store the config names: a :class:`ReplicaStore` on a site, else the
    plain store (exactly what a single kiosk has always opened). ``keyless``: a plain
    encrypted store opens without the key, for what needs none (deleting, listing); a
    replica always needs it, since a sync may bring people to seal."""
    from enroll.keys import operator_key
    from enroll.store import default_store_dir, open_store

    enroll = config.enroll
    if store_dir is not None:
        enroll = enroll.model_copy(update={"store_dir": store_dir})
    if config.site is None:
        return open_store(enroll, keyless=keyless)
    root = enroll.store_dir or default_store_dir()
    state = SiteState(root)
    try:
        return ReplicaStore(
            root,
            state,
            key=operator_key(),
            encrypt=enroll.encrypt,
            retention_days=enroll.retention_days,
        )
    except BaseException:
        state.close()
        raise
