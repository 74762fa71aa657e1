"""The sync worker: the replica follows the registry, the outbox drains into it.

One cycle (:meth:`SiteSync.sync_once`), in this order:

1. push the queued erasures made here;
2. read the registry's tombstones after the cursor and apply them: first to the
   naming gate (from that moment nobody erased is named), then to the replica (the
   person's name in the trials queued here becomes the tombstone's label first);
3. pull the other changes after the cursor in order, in batches, inside one
   repeatable-read snapshot, skipping anyone erased, on the site or here (an erasure
   the registry refused this kiosk's role: the person stays gone from this replica);
   advance the cursor per batch;
4. push the rest of the outbox (enrollments, renames, door events, trials, each trial
   with the person id of every name in it that the replica knows);
5. report this kiosk's state (``kiosks`` row) for `kiosk site status`.

After a cycle that erased someone from the replica, ``on_erased`` lets a running door
finish the erasure's traces on the kiosk (kiosk/erasure.py).

The worker thread (:meth:`SiteSync.start`) runs a cycle at start, whenever the registry
NOTIFYs a change, whenever something is queued here, and every ``poll_s`` regardless.
While the registry is unreachable it retries with a growing delay (1 s up to
``poll_s``) and the kiosk keeps serving from its replica until it is too old.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kiosk import __version__
from kiosk.site.connect import CHANNEL, SiteRefused, SiteUnreachable, connect, first_line
from kiosk.site.registry import PersonRecord, Registry, trial_names
from kiosk.site.replica import ReplicaGate, ReplicaStore
from kiosk.site.schema import require_current
from models.errors import UserError

if TYPE_CHECKING:
    from kiosk.config import SiteConfig

log = logging.getLogger(__name__)

BATCH = 50  # people fetched per round trip of a pull
PERSON_CHANGES = ("person", "rename", "embeddings")


@dataclass
class SyncReport:
    erased: int = 0
    added: int = 0
    renamed: int = 0
    bundle: int | None = None
    pushed: int = 0
    events: int = 0
    embeddings: int = 0
    rejected: int = 0
    cursor: int = 0


class SiteSync:
    """Keeps one replica in step with the registry. ``bundle_path``: where a published
    CLIP bundle is written for the recognizer to hot-swap (None: bundles are ignored).
    ``on_change`` runs after a cycle that changed the replica or the bundle, and
    ``on_erased`` after one that erased someone from the replica (a running door then
    finishes the erasure's traces: kiosk/erasure.py); both on the sync's thread, so
    they must not block."""

    def __init__(
        self,
        config: SiteConfig,
        store: ReplicaStore,
        *,
        bundle_path: Path | None = None,
        gate: ReplicaGate | None = None,
        events_dir: Path | None = None,
        on_change: Callable[[], None] | None = None,
        on_erased: Callable[[], None] | None = None,
        sealer_key: bytes | None = None,
    ) -> None:
        self.config = config
        self.store = store
        self.state = store.site_state
        self.bundle_path = bundle_path
        self.events_dir = events_dir
        self.on_change = on_change
        self.on_erased = on_erased
        sync = self.state.sync_state()
        self.gate = gate or ReplicaGate(timedelta(hours=config.max_replica_age_h), sync.last_sync)
        if sync.last_sync is not None:
            self.gate.synced(sync.last_sync, sync.cursor)
        self.gate.refresh(store.people())
        if bundle_path is not None and sync.bundle_version is not None:
            self.gate.use_bundle(self.state.bundle_people())
        self._sealer = None
        if config.encrypt:
            from enroll.keys import KEY_ENV, cipher

            if sealer_key is None:
                raise UserError(f"[site] encrypt is on but no key is set: set ${KEY_ENV}")
            self._sealer = cipher(sealer_key)
        self._conn: Any = None
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()  # one cycle at a time
        self.online = False
        self.last_error = ""
        self.cycles = 0

    # -- the connection -------------------------------------------------------------------

    def _registry(self) -> Registry:
        if self._conn is None or self._conn.closed:
            conn = connect(self.config)
            try:
                require_current(conn)
                conn.rollback()
            except BaseException:
                conn.close()
                raise
            self._conn = conn
        return Registry(self._conn, self._sealer)

    def _drop_connection(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.close()
        self._conn = None
        self.online = False

    def close(self) -> None:
        self.stop()
        self._drop_connection()
        self._close_listener()

    # -- one cycle ------------------------------------------------------------------------

    def sync_once(self) -> SyncReport:
        """One full cycle; raises :class:`SiteUnreachable` when the registry is offline."""
        psycopg = _psycopg()
        with self._lock:
            try:
                registry = self._registry()
                report = SyncReport()
                self._push(registry, report, only="delete")
                self._pull(registry, report)
                self._push(registry, report)
                self._share_embeddings(registry, report)
                self._push_events(registry, report)
                self._heartbeat(registry)
            except psycopg.OperationalError as error:
                self._drop_connection()
                message = f"the site registry is unreachable: {first_line(error)}"
                self.last_error = message
                self.state.failed(message)
                raise SiteUnreachable(message) from None
            except SiteUnreachable as error:
                self._drop_connection()
                self.last_error = str(error)
                self.state.failed(str(error))
                raise
            finally:
                self.gate.started = True
            self.online = True
            self.last_error = ""
            self.cycles += 1
        if self.on_change is not None and (
            report.erased or report.added or report.renamed or report.bundle or report.rejected
        ):
            self.on_change()
        if self.on_erased is not None and report.erased:
            self.on_erased()
        return report

    def _pull(self, registry: Registry, report: SyncReport) -> None:
        psycopg = _psycopg()
        conn = registry.conn
        conn.rollback()
        # One snapshot for the whole pull: the erasures and the changes read together.
        conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        conn.read_only = True
        try:
            site_id = registry.site_id()
            sync = self.state.sync_state()
            if sync.site_id != site_id:
                if sync.site_id is not None:
                    log.warning("the site registry was replaced: syncing the replica afresh")
                self.state.reset(site_id)
                sync = self.state.sync_state()
            cursor = sync.cursor
            # 1. Erasures before anything else: the gate at once, then the replica.
            tombstones = registry.tombstones_after(cursor)
            # With them, whoever this kiosk erased and the registry refused to (a door's
            # shorter retention: the person stays on the site, never pulled back here).
            erased = {tombstone.uid for tombstone in tombstones} | self.state.erased_here()
            self.gate.block(sorted(erased))
            for tombstone in tombstones:
                if self.store.apply_erasure(tombstone.uid, tombstone.label):
                    report.erased += 1
            if report.erased:
                self.gate.refresh(self.store.people())
            # 2. A first sync: the replica holds exactly the registry (and what is queued).
            if cursor == 0:
                keep = registry.people_uids() | self.state.pending_people()
                for person in self.store.people():
                    if person.uid not in keep:
                        self.store.reject_local(person.uid, "not in the site registry")
                        report.erased += 1
            # 3. The rest of the feed, in order.
            bundle_version: int | None = None
            while True:
                changes = registry.changes_after(cursor, BATCH)
                if not changes:
                    break
                wanted = []
                for change in changes:
                    if change.kind in PERSON_CHANGES and change.person_uid not in erased:
                        wanted.append(change.person_uid)
                    elif change.kind == "bundle":
                        bundle_version = change.bundle_version
                for record in registry.people(sorted({u for u in wanted if u})):
                    self._apply(record, report)
                cursor = changes[-1].seq
                self.state.advance(cursor)
                self.gate.refresh(self.store.people())
            if bundle_version is not None and self.bundle_path is not None:
                self._receive_bundle(registry, bundle_version, report)
            at = datetime.now(UTC)
        finally:
            conn.rollback()
            conn.isolation_level = None
            conn.read_only = None
        self.state.synced(at)
        self.gate.refresh(self.store.people())
        self.gate.synced(at, cursor)
        report.cursor = cursor

    def _apply(self, record: PersonRecord, report: SyncReport) -> None:
        current = self.store.by_uid(record.uid)
        if current is None:
            self.store.apply_person(record)
            report.added += 1
        else:
            if current.name != record.name:
                self.store.apply_rename(record.uid, record.name)
                report.renamed += 1
            have = self.store.cached_embeddings(record.uid)
            for model, vectors in record.embeddings.items():
                if model not in have:
                    self.store.cache_embeddings(record.uid, model, vectors)
        self.state.embeddings_shared([(record.uid, model) for model in record.embeddings])

    def _receive_bundle(self, registry: Registry, version: int, report: SyncReport) -> None:
        from models.io import write_bytes_atomic

        current = self.state.sync_state().bundle_version
        if current is not None and current >= version:
            return
        bundle = registry.bundle(version)
        if bundle is None:
            # Replaced by a newer one meanwhile (whose change comes next), or removed by
            # an erasure that could not prune it: the newest the registry keeps.
            latest = registry.latest_bundle_version()
            if latest is None or latest == version or (current is not None and current >= latest):
                return
            bundle = registry.bundle(latest)
            if bundle is None:
                return
        assert self.bundle_path is not None
        try:
            write_bytes_atomic(self.bundle_path, bundle.data)
        except OSError as error:
            raise UserError(
                f"cannot write the site bundle to {self.bundle_path}: {error}"
            ) from error
        self.state.received_bundle(bundle.version, bundle.people)
        self.gate.use_bundle(bundle.people)
        report.bundle = bundle.version
        log.info("received CLIP bundle version %d (%s)", bundle.version, bundle.sha256[:12])

    def _push(self, registry: Registry, report: SyncReport, only: str | None = None) -> None:
        psycopg = _psycopg()
        while True:
            batch = [p for p in self.state.pending(100) if only is None or p.kind == only]
            if not batch:
                return
            for entry in batch:
                try:
                    self._push_one(registry, entry.kind, entry.payload)
                except (SiteRefused, psycopg.errors.InsufficientPrivilege) as error:
                    reason = _refusal(error)
                    self.state.reject(entry.id, reason)
                    if entry.kind == "person" and entry.person_uid:
                        self.store.reject_local(entry.person_uid, reason)
                        self.gate.refresh(self.store.people())
                    elif entry.kind == "rename" and entry.person_uid:
                        self._restore_name(registry, entry.person_uid)
                    log.warning("the site registry refused a %s: %s", entry.kind, reason)
                    report.rejected += 1
                    registry.conn.rollback()
                    continue
                except psycopg.OperationalError:
                    raise  # offline: the entry stays queued
                except (psycopg.DatabaseError, KeyError, ValueError, TypeError) as error:
                    # bad data: retrying cannot help
                    self.state.reject(entry.id, f"malformed {entry.kind}: {first_line(error)}")
                    report.rejected += 1
                    registry.conn.rollback()
                    continue
                self.state.done(entry.id)
                report.pushed += 1
            if only is not None:
                return

    def _restore_name(self, registry: Registry, uid: str) -> None:
        """A rename the registry refused: the person has the site's name here again."""
        registry.conn.rollback()  # the refused statement's transaction
        name = registry.names().get(uid)
        if name is not None and self.store.apply_rename(uid, name):
            self.gate.refresh(self.store.people())

    def _push_one(self, registry: Registry, kind: str, payload: bytes) -> None:
        if kind == "person":
            record = PersonRecord.from_json(payload)
            # Embeddings computed here since the enrollment was queued travel with it.
            cached = self.store.cached_embeddings(record.uid)
            record = dataclasses.replace(record, embeddings={**cached, **record.embeddings})
            registry.add_person(record)
            self.state.embeddings_shared([(record.uid, model) for model in record.embeddings])
            return
        data = json.loads(payload)
        if kind == "delete":
            registry.erase(data["uid"], data["reason"], data.get("label"))
        elif kind == "rename":
            registry.rename(data["uid"], data["name"])
        elif kind == "trial":
            # Who each name is, as the replica knows them now (an erasure applied here
            # has renamed them in the queued trial already).
            known = {name: self.gate.uid_of(name) for name in trial_names(data)}
            registry.add_trial(data, {name: uid for name, uid in known.items() if uid})
        else:
            raise SiteRefused(f"unknown kind of push {kind!r}")

    _embedding_count = -1
    _may_enroll: bool | None = None

    def _share_embeddings(self, registry: Registry, report: SyncReport) -> None:
        """Embeddings this kiosk computed (its gallery rebuild caches them) that the
        registry lacks: shared once, so other kiosks need not compute them. Only a role
        that may enroll shares; the check runs only when the cache has grown."""
        count = self.store.embedding_count()
        if count == self._embedding_count:
            return
        if self._may_enroll is None:
            self._may_enroll = registry.may_enroll()
            registry.conn.rollback()
        if not self._may_enroll:
            self._embedding_count = count
            return
        shared = self.state.shared_embeddings()
        done = []
        for person in self.store.people():
            for model, vectors in self.store.cached_embeddings(person.uid).items():
                if (person.uid, model) not in shared:
                    if registry.add_embeddings(person.uid, model, vectors):
                        report.embeddings += 1
                    done.append((person.uid, model))
        self.state.embeddings_shared(done)
        self._embedding_count = count

    def _push_events(self, registry: Registry, report: SyncReport) -> None:
        """The door events logged since the last push (kiosk/site/events.py)."""
        from kiosk.site.events import read_events

        if self.events_dir is None:
            return
        while True:
            identity, offset = self.state.events_pushed()
            batch = read_events(
                self.events_dir, offset, identity, self.config.kiosk_id, self.gate.uid_of
            )
            if batch is None or (batch.end == offset and batch.identity == identity):
                return
            registry.add_events(batch.events)
            self.state.pushed_events(batch.identity, batch.end)
            report.events += len(batch.events)

    def events_behind(self) -> int:
        """Bytes of the event log not pushed yet."""
        from kiosk.site.events import log_size

        if self.events_dir is None:
            return 0
        return max(0, log_size(self.events_dir) - self.state.events_pushed()[1])

    def _heartbeat(self, registry: Registry) -> None:
        sync = self.state.sync_state()
        counts = self.state.counts()
        registry.heartbeat(
            {
                "last_sync": sync.last_sync,
                "cursor": sync.cursor,
                "bundle_version": sync.bundle_version,
                "queued": counts["queued"],
                "rejected": counts["rejected"],
                "health": self.gate.refusal() or "ok",
                "program": f"kiosk {__version__}",
            }
        )

    # -- the worker thread ----------------------------------------------------------------

    def start(self) -> None:
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="site-sync", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        self._wake.set()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def wait_started(self, timeout: float) -> bool:
        """Wait until the first sync attempt has ended (successfully or not)."""
        deadline = time.monotonic() + timeout
        while not self.gate.started and time.monotonic() < deadline:
            time.sleep(0.01)
        return self.gate.started

    def _run(self) -> None:
        delay = 1.0
        while not self._stop.is_set():
            self._listener()  # listening before the pull: no change slips in between
            try:
                self.sync_once()
                delay = 1.0
            except SiteUnreachable as error:
                log.warning("%s; serving from the replica", error)
                self._sleep(delay)
                delay = min(delay * 2, self.config.poll_s)
                continue
            except Exception as error:  # never take the door down: log, back off, go on
                self.last_error = f"site sync failed: {first_line(error)}"
                log.exception(self.last_error)
                self._drop_connection()
                self._sleep(delay)
                delay = min(delay * 2, self.config.poll_s)
                continue
            self._wait_for_work()

    def _sleep(self, seconds: float) -> None:
        self._wake.wait(seconds)
        self._wake.clear()

    def _wait_for_work(self) -> None:
        """Until a NOTIFY, something queued here, a wake, or the poll interval."""
        deadline = time.monotonic() + self.config.poll_s
        listener = self._listener()
        try:
            while not self._stop.is_set():
                left = deadline - time.monotonic()
                if left <= 0 or self._wake.is_set():
                    break
                if self.state.counts()["queued"] or self.events_behind():
                    break
                if listener is None:
                    self._wake.wait(min(0.5, left))
                    continue
                try:
                    if any(True for _ in listener.notifies(timeout=min(0.5, left), stop_after=1)):
                        break
                except Exception:  # the server went away: the next cycle finds out
                    self._close_listener()
                    break
        finally:
            self._wake.clear()

    _listen: Any = None

    def _listener(self) -> Any:
        if self._listen is not None and not self._listen.closed:
            return self._listen
        try:
            self._listen = connect(self.config, autocommit=True)
            self._listen.execute(f"LISTEN {CHANNEL}")
        except Exception:
            self._listen = None
        return self._listen

    def _close_listener(self) -> None:
        if self._listen is not None:
            with contextlib.suppress(Exception):
                self._listen.close()
        self._listen = None


def _refusal(error: BaseException) -> str:
    psycopg = _psycopg()
    if isinstance(error, psycopg.errors.InsufficientPrivilege):
        return (
            "this kiosk's database role may not do that (a door kiosk may not enroll or "
            f"delete; ask the site's operator): {first_line(error)}"
        )
    return str(error)


def _psycopg() -> Any:
    from kiosk.site.connect import psycopg_module

    return psycopg_module()
