"""Site operations for the operator: one sync, upload, train-and-publish, status, doctor.

Training is a function handed in (:data:`Trainer`): ``kiosk site train`` uses
:func:`train_bundle` (models/train, on the replica's aligned crops); a background
retrain can hand in its own. Publishing is only bytes, their sha256 and a version, so it
does not care how the bundle was made.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kiosk.config import KioskConfig
from kiosk.site.connect import SiteUnreachable, connect, describe, first_line, password_source
from kiosk.site.registry import Registry
from kiosk.site.replica import ReplicaStore, open_people
from kiosk.site.sync import SiteSync, SyncReport
from models.errors import UserError
from models.names import name_key
from models.words import counted

if TYPE_CHECKING:
    from collections.abc import Iterator

    from enroll.store import PeopleStore
    from kiosk.config import SiteConfig
    from kiosk.setup.doctor import DoctorReport

Log = Callable[[str], None]
# (config, replica, log) -> (bundle bytes, training report)
Trainer = Callable[[KioskConfig, ReplicaStore, Log], tuple[bytes, dict[str, Any]]]


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def require_site(config: KioskConfig) -> SiteConfig:
    if config.site is None:
        raise UserError("this kiosk has no [site] section in its config: see docs/site.md")
    return config.site


@contextmanager
def site_session(config: KioskConfig, store_dir: Path | None = None) -> Iterator[SiteSync]:
    """The replica and a sync over it, for one command (no worker thread)."""
    from enroll.keys import operator_key

    site = require_site(config)
    store = open_people(config, store_dir)
    assert isinstance(store, ReplicaStore)
    try:
        sync = SiteSync(site, store, sealer_key=operator_key())
        try:
            yield sync
        finally:
            sync.close()
    finally:
        store.close()


@contextmanager
def people_store(
    config: KioskConfig,
    store_dir: Path | None = None,
    *,
    keyless: bool = False,
    then: Callable[[PeopleStore], None] | None = None,
) -> Iterator[PeopleStore]:
    """The people store for a command. On a site, the replica, brought up to date first
    (when the registry is reachable) so the command sees the site's people, and whose
    changes are pushed (or left queued, when it is not) when the block ends.
    ``keyless``: see :func:`kiosk.site.replica.open_people`. ``then``: run on the store
    when the block ends without an error, after the push (an erasure made in the block
    has reached the registry when its traces are removed: a site report is made again
    from the registry's trials then)."""
    from enroll.keys import operator_key

    store = open_people(config, store_dir, keyless=keyless)
    try:
        site = config.site
        if not isinstance(store, ReplicaStore) or site is None:
            yield store
            if then is not None:
                then(store)
            return
        sync = SiteSync(site, store, sealer_key=operator_key())
        try:
            flush(sync)
            yield store
            if store.site_state.counts()["queued"]:
                flush(sync)
            if then is not None:
                then(store)
        finally:
            sync.close()
    finally:
        store.close()


def flush(sync: SiteSync, log: Log = _stderr) -> SyncReport | None:
    """One sync; None when the registry is offline (changes stay queued, and the
    kiosk's worker pushes them later). Refusals are said, once each."""
    try:
        report = sync.sync_once()
    except SiteUnreachable as error:
        log(f"{error}; working on the replica, changes are queued for the site")
        return None
    if report.rejected:
        for kind, uid, reason in sync.state.rejected()[-report.rejected :]:
            log(f"the site registry refused a {kind}{f' of {uid}' if uid else ''}: {reason}")
    return report


def upload(sync: SiteSync, log: Log = _stderr) -> int:
    """Queue everyone in the local store that the registry lacks (a kiosk joining a site
    with people already enrolled), then push; the number queued."""
    with connect(sync.config) as conn:
        known = Registry(conn).people_uids()
    queued = 0
    for person in sync.store.people():
        if person.uid in known:
            continue
        record = sync.store.record(person)
        sync.state.enqueue(f"person:{person.uid}", "person", record.to_json(), person.uid)
        queued += 1
    if queued:
        log(f"queued {counted(queued, 'person')} for the site registry")
    flush(sync, log)
    return queued


def train_bundle(
    config: KioskConfig, store: ReplicaStore, log: Log
) -> tuple[bytes, dict[str, Any]]:
    """The site's CLIP bundle, trained on the replica as every kiosk trains its own
    (kiosk.training.train_from_store: the people's opaque ids, the store state recorded,
    warm-started from this machine's last site bundle) -> bundle bytes and a report."""
    from kiosk.build import bundle_path
    from kiosk.training import train_from_store
    from models.clip.bundle import load_bundle

    path = bundle_path(config)
    done = train_from_store(config, store, out=path, log=log)
    if not done.trained:
        log("the site's bundle is already trained from the registry's people as they are")
    bundle = load_bundle(path)
    return path.read_bytes(), {**done.report, "people_names": list(bundle.people)}


def train_and_publish(
    config: KioskConfig,
    sync: SiteSync,
    trainer: Trainer = train_bundle,
    log: Log = _stderr,
) -> dict[str, Any]:
    """Bring the replica up to date, train on it, publish the bundle; what was published."""
    sync.sync_once()
    data, report = trainer(config, sync.store, log)
    names = report.get("people_names") or [p.name for p in sync.store.people()]
    holders = {name_key(p.name): p.uid for p in sync.store.people()}
    people = {name_key(n): holders[name_key(n)] for n in names if name_key(n) in holders}
    meta = {k: v for k, v in report.items() if isinstance(v, (int, float, str, bool))}
    with connect(sync.config) as conn:
        version = Registry(conn).publish_bundle(data, people, meta)
    from kiosk.site.registry import sha256

    known = counted(len(people), "person")
    log(f"published CLIP bundle version {version}: {known}, {len(data)} bytes")
    return {"version": version, "sha256": sha256(data), "people": len(people), **meta}


@dataclass(frozen=True)
class KioskRow:
    kiosk_id: str
    last_sync: datetime | None
    replica_age_s: float | None
    last_seen_s: float
    bundle_version: int | None
    queued: int
    rejected: int
    health: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "kiosk_id": self.kiosk_id,
            "last_sync": self.last_sync.isoformat() if self.last_sync else None,
            "replica_age_s": None if self.replica_age_s is None else round(self.replica_age_s, 1),
            "last_seen_s": round(self.last_seen_s, 1),
            "bundle_version": self.bundle_version,
            "queued": self.queued,
            "rejected": self.rejected,
            "health": self.health,
        }


def site_status(site: SiteConfig, poll_s: float | None = None) -> dict[str, Any]:
    """Every kiosk's last report (a door role sees only its own row), with its replica's
    age and how long ago it was heard from; a kiosk silent for three poll intervals is
    reported offline."""
    silent_after = 3 * (poll_s or site.poll_s)
    with connect(site) as conn:
        registry = Registry(conn)
        rows = registry.kiosks()
        last_seq = registry.last_seq()
        bundle = registry.latest_bundle_version()
        people = len(registry.people_uids())
        conn.rollback()
    kiosks = []
    for row in rows:
        now = row["now"]
        seen = (now - row["updated_at"]).total_seconds()
        health = row["health"]
        if seen > silent_after:
            health = f"offline (silent for {seen:.0f} s)"
        kiosks.append(
            KioskRow(
                kiosk_id=row["kiosk_id"],
                last_sync=row["last_sync"],
                replica_age_s=None
                if row["last_sync"] is None
                else (now - row["last_sync"]).total_seconds(),
                last_seen_s=seen,
                bundle_version=row["bundle_version"],
                queued=row["queued"],
                rejected=row["rejected"],
                health=health,
            ).as_dict()
            | {"behind": last_seq - row["cursor"]}
        )
    return {
        "registry": describe(site),
        "people": people,
        "last_change": last_seq,
        "bundle_version": bundle,
        "kiosks": kiosks,
    }


def check_site(report: DoctorReport, config: KioskConfig) -> None:
    """`kiosk doctor`'s site line: reachable, as which role, schema, replica; no secret."""
    from kiosk.site.schema import SCHEMA_VERSION, schema_version

    if config.site is None:
        report.checks["site"] = "none (a single kiosk)"
        report.add("site", "info", "site", report.checks["site"])
        return
    site = config.site
    check: dict[str, Any] = {"registry": describe(site), "password": password_source(site)}
    report.checks["site"] = check
    try:
        with connect(site) as conn:
            version = schema_version(conn)
            check["role"] = conn.execute("SELECT current_user").fetchone()[0]
            check["schema_version"] = version
            conn.rollback()
    except (UserError, Exception) as error:
        check["reachable"] = False
        report.add(
            "site",
            "warning",
            "registry",
            f"the site registry cannot be reached: {first_line(error)}",
            "check [site] host/port/user and the password ($KIOSK_SITE_PASSWORD or the "
            "keyring); the kiosk serves from its replica meanwhile",
        )
        return
    check["reachable"] = True
    if version != SCHEMA_VERSION:
        report.add(
            "site",
            "error",
            "registry",
            f"the site registry has schema version {version}, this program needs {SCHEMA_VERSION}",
            "run `kiosk site migrate` as the registry's owner (or update this program)",
        )
    else:
        report.add("site", "ok", "registry", f"{check['registry']} (as {check['role']})")
