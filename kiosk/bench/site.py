"""The site benchmark and fault drill: a throwaway PostgreSQL cluster, an operator in
this process, and kiosk processes (kiosk/bench/site_kiosk.py) that run the product's
sync code.

- :func:`run_benchmark` (`kiosk bench site`): N kiosks and P people: how long one
  enrollment and one erasure take to reach every kiosk's replica, the cost of syncing
  per kiosk per hour when nothing changes, and the replica's size.
- :func:`run_faults` (the fault test, and `kiosk bench site --faults N`): kiosks logging
  door events and trials while the operator enrolls and erases; each round stops the
  server mid-sync (an immediate shutdown, i.e. a crash) and kills a kiosk with SIGKILL,
  then restarts both. At the end every kiosk's local log is compared with the registry:
  events lost, events stored twice, people named after their erasure had reached the
  kiosk, trials lost or stored twice.

Arrival is observed from outside: the kiosk's replica database is polled read-only for
the person's row, so the kiosks are not instrumented.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from enroll.store import NewPhoto
from kiosk.bench.pgcluster import PgCluster, start_cluster
from kiosk.config import SiteConfig
from kiosk.site.registry import PersonRecord, Registry
from kiosk.site.replica import ReplicaStore
from kiosk.site.schema import add_kiosk, migrate
from kiosk.site.state import SiteState
from kiosk.site.sync import SiteSync
from models.errors import UserError

Log = Callable[[str], None]
DBNAME = "kiosk_site"


def _quiet(message: str) -> None:
    pass


def synthetic_crop(rng: np.random.Generator, size: int = 224) -> np.ndarray:
    """A smooth 224 px image (a PNG of the size a real face crop has, not of noise)."""
    import cv2

    small = rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)
    image = cv2.resize(small, (size, size), interpolation=cv2.INTER_CUBIC)
    noise = rng.integers(0, 6, (size, size, 3), dtype=np.uint8)
    return np.asarray(cv2.add(image, noise), dtype=np.uint8)


def person_record(index: int, rng: np.random.Generator, photos: int) -> PersonRecord:
    from enroll.store import encode_png, new_uid

    now = datetime.now(UTC)
    crops = [encode_png(synthetic_crop(rng)) for _ in range(photos)]
    vectors = [rng.normal(size=128).astype(np.float32).tobytes() for _ in range(photos)]
    return PersonRecord(
        uid=new_uid(),
        name=f"person {index:05d}",
        external_id=None,
        created_at=now.isoformat(),
        consent_version="bench",
        consent_at=now.isoformat(),
        retain_until=now.replace(year=now.year + 1).isoformat(),
        photos=[("front", png) for png in crops],
        embeddings={"mobilefacenet_128d": vectors},
    )


@dataclass
class KioskProcess:
    name: str
    config: SiteConfig
    root: Path
    spec: Path
    process: subprocess.Popen[bytes] | None = None
    restarts: int = 0

    @property
    def bundle(self) -> Path:
        return self.root / "recognizer.bundle"

    def bundle_sha256(self) -> str | None:
        from kiosk.site.registry import sha256

        try:
            return sha256(self.bundle.read_bytes())
        except OSError:
            return None

    @property
    def people_db(self) -> Path:
        return self.root / "people" / "people.db"

    def has(self, uid: str) -> bool:
        """Whether the kiosk's replica holds this person (read-only, from outside)."""
        if not self.people_db.exists():
            return False
        try:
            with contextlib.closing(
                sqlite3.connect(f"file:{self.people_db}?mode=ro", uri=True, timeout=5)
            ) as db:
                return (
                    db.execute("SELECT 1 FROM people WHERE uid = ?", (uid,)).fetchone() is not None
                )
        except sqlite3.Error:
            return False

    def count(self) -> int:
        if not self.people_db.exists():
            return 0
        try:
            with contextlib.closing(
                sqlite3.connect(f"file:{self.people_db}?mode=ro", uri=True, timeout=5)
            ) as db:
                return int(db.execute("SELECT COUNT(*) FROM people").fetchone()[0])
        except sqlite3.Error:
            return 0


@dataclass
class SiteRig:
    """The cluster, the site database, the operator and the kiosk processes."""

    root: Path
    cluster: PgCluster
    admin: SiteConfig
    operator: SiteConfig
    kiosks: list[KioskProcess] = field(default_factory=list)
    stop_file: Path = Path()

    def spawn(self, kiosk: KioskProcess) -> None:
        kiosk.process = subprocess.Popen(
            [sys.executable, "-m", "kiosk.bench.site_kiosk", str(kiosk.spec)],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
        )
        assert kiosk.process.stdout is not None
        kiosk.process.stdout.readline()  # "ready": the sync worker is running

    def kill(self, kiosk: KioskProcess) -> None:
        if kiosk.process is not None and kiosk.process.poll() is None:
            kiosk.process.send_signal(signal.SIGKILL)
            kiosk.process.wait(30)
        kiosk.process = None

    def stop_kiosks(self) -> None:
        self.stop_file.touch()
        for kiosk in self.kiosks:
            if kiosk.process is not None:
                try:
                    kiosk.process.wait(60)
                except subprocess.TimeoutExpired:
                    self.kill(kiosk)
                kiosk.process = None

    def connect_operator(self) -> Any:
        from kiosk.site.connect import connect

        return connect(self.operator)

    def close(self) -> None:
        self.stop_kiosks()
        for kiosk in self.kiosks:
            self.kill(kiosk)
        self.cluster.remove()


@contextlib.contextmanager
def site_rig(
    kiosks: int,
    *,
    role: str = "door",
    events_per_s: float = 0.0,
    trial_every: int = 0,
    poll_s: float = 30.0,
    root: Path | None = None,
    bundles: bool = False,
) -> Iterator[SiteRig]:
    """A running site: cluster, migrated database, an operator role and ``kiosks``
    kiosk roles (not started: :meth:`SiteRig.spawn`)."""
    base = Path(tempfile.mkdtemp(prefix="kiosk-site-", dir=str(root) if root else "/tmp"))
    base.chmod(0o755)  # the server may run as another user (`postgres`, under root)
    cluster = start_cluster(base / "pg")
    try:
        with cluster.connect() as conn:
            conn.execute(f"CREATE DATABASE {DBNAME}")
        with cluster.connect(DBNAME) as conn:
            conn.autocommit = False
            migrate(conn, create_roles=True)
            conn.commit()
            suffix = f"{os.getpid()}_{int(time.time() * 1000) % 100000}"
            add_kiosk(conn, f"op_{suffix}", "operator", None)
            names = [f"door{i}_{suffix}" for i in range(kiosks)]
            for name in names:
                add_kiosk(conn, name, role, None)
            conn.commit()

        def config(user: str) -> SiteConfig:
            return SiteConfig(
                host=str(cluster.socket_dir),
                port=cluster.port,
                dbname=DBNAME,
                user=user,
                poll_s=poll_s,
                connect_timeout_s=2,
            )

        rig = SiteRig(base, cluster, config(cluster.superuser), config(f"op_{suffix}"))
        rig.stop_file = base / "stop"
        for i, name in enumerate(names):
            folder = base / f"kiosk{i}"
            folder.mkdir()
            spec = folder / "spec.json"
            spec.write_text(
                json.dumps(
                    {
                        "site": config(name).model_dump(mode="json"),
                        "root": str(folder),
                        "stop_file": str(rig.stop_file),
                        "events_per_s": events_per_s,
                        "trial_every": trial_every,
                        "bundle_path": str(folder / "recognizer.bundle") if bundles else None,
                    }
                ),
                encoding="utf-8",
            )
            rig.kiosks.append(KioskProcess(name, config(name), folder, spec))
    except BaseException:
        cluster.remove()
        shutil.rmtree(base, ignore_errors=True)
        raise
    try:
        yield rig
    finally:
        rig.close()
        shutil.rmtree(base, ignore_errors=True)


def _wait(check: Callable[[], bool], timeout: float, step: float = 0.01) -> float | None:
    """Seconds until ``check()`` holds, or None after ``timeout``."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if check():
            return time.monotonic() - started
        time.sleep(step)
    return None


def _proc_cost(pid: int) -> tuple[float, int]:
    """(CPU seconds, bytes read + written through system calls) of a process so far."""
    ticks = os.sysconf("SC_CLK_TCK")
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / ticks
    io = dict(line.split(": ") for line in Path(f"/proc/{pid}/io").read_text().splitlines())
    return cpu, int(io["rchar"]) + int(io["wchar"])


def _du(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def run_benchmark(
    kiosks: int = 5,
    people: int = 1000,
    photos: int = 3,
    repeats: int = 5,
    idle_s: float = 60.0,
    poll_s: float = 30.0,
    log: Log = _quiet,
) -> dict[str, Any]:
    rng = np.random.default_rng(0)
    with site_rig(kiosks, poll_s=poll_s) as rig:
        started = time.monotonic()
        with rig.connect_operator() as conn:
            registry = Registry(conn)
            for index in range(people):
                registry.add_person(person_record(index, rng, photos))
        load_s = time.monotonic() - started
        log(f"registry loaded with {people} people in {load_s:.1f} s")
        started = time.monotonic()
        for kiosk in rig.kiosks:
            rig.spawn(kiosk)
        fill = _wait(lambda: all(k.count() >= people for k in rig.kiosks), 3600, 0.5)
        if fill is None:
            raise UserError("the kiosks did not fill their replicas within an hour")
        fill_s = time.monotonic() - started
        log(f"{kiosks} replicas filled in {fill_s:.1f} s")

        operator_root = rig.root / "operator"
        store = ReplicaStore(operator_root, SiteState(operator_root))
        sync = SiteSync(rig.operator, store)
        sync.sync_once()
        enroll: list[float] = []
        erase: list[float] = []
        try:
            for index in range(repeats):
                # Enrolled at the operator's kiosk: its outbox, its push, then every door.
                name = f"new person {index}"
                crops = [synthetic_crop(rng) for _ in range(photos)]
                started = time.monotonic()
                uid = store.add_person(name, [NewPhoto(c) for c in crops], _consent()).uid
                sync.sync_once()
                enroll.append(_arrival(rig, uid, True, started))
                started = time.monotonic()
                store.delete(name, reason="bench")
                sync.sync_once()
                erase.append(_arrival(rig, uid, False, started))
                log(f"round {index + 1}: enrollment {enroll[-1]:.3f} s, erasure {erase[-1]:.3f} s")
        finally:
            sync.close()
            store.close()

        time.sleep(2.0)  # let the last cycle settle
        pids = [k.process.pid for k in rig.kiosks if k.process is not None]
        with rig.cluster.connect(DBNAME) as conn:
            before_xact = _xacts(conn)
        before = [_proc_cost(pid) for pid in pids]
        time.sleep(idle_s)
        after = [_proc_cost(pid) for pid in pids]
        with rig.cluster.connect(DBNAME) as conn:
            after_xact = _xacts(conn)
        scale = 3600.0 / idle_s
        cpu = [(a[0] - b[0]) * scale for a, b in zip(after, before, strict=True)]
        io = [(a[1] - b[1]) * scale for a, b in zip(after, before, strict=True)]
        size = _du(rig.kiosks[0].root / "people")
        return {
            "kiosks": kiosks,
            "people": people,
            "photos_per_person": photos,
            "crop_png_bytes": int(np.mean([len(p) for _, p in person_record(0, rng, 3).photos])),
            "registry_load_s": round(load_s, 2),
            "replica_fill_s": round(fill_s, 2),
            "enrollment_to_every_kiosk_s": _stats(enroll),
            "erasure_to_every_kiosk_s": _stats(erase),
            "idle": {
                "window_s": idle_s,
                "poll_s": poll_s,
                "cpu_s_per_kiosk_hour": round(float(np.median(cpu)), 2),
                "syscall_bytes_per_kiosk_hour": int(np.median(io)),
                "registry_transactions_per_kiosk_hour": round(
                    (after_xact - before_xact) * scale / kiosks, 1
                ),
            },
            "replica_bytes": size,
            "replica_bytes_per_person": round(size / people),
        }


def _consent() -> Any:
    from enroll.store import Consent

    return Consent("bench", datetime.now(UTC))


def _arrival(rig: SiteRig, uid: str, present: bool, started: float) -> float:
    """Seconds from ``started`` until every kiosk's replica has (or lacks) ``uid``."""
    waiting = list(rig.kiosks)
    deadline = started + 120
    while waiting and time.monotonic() < deadline:
        waiting = [k for k in waiting if k.has(uid) != present]
        if waiting:
            time.sleep(0.005)
    if waiting:
        raise UserError(f"{len(waiting)} kiosks did not follow within 120 s")
    return time.monotonic() - started


def _xacts(conn: Any) -> int:
    row = conn.execute(
        "SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = %s", (DBNAME,)
    ).fetchone()
    conn.execute("SELECT pg_stat_clear_snapshot()")
    return int(row[0])


def _stats(values: list[float]) -> dict[str, float]:
    return {
        "median": round(float(np.median(values)), 3),
        "max": round(max(values), 3),
        "runs": len(values),
    }


# -- the fault drill ----------------------------------------------------------------------


def run_faults(
    rounds: int = 20,
    kiosks: int = 3,
    people: int = 6,
    events_per_s: float = 20.0,
    trial_every: int = 10,
    seed: int = 0,
    log: Log = _quiet,
) -> dict[str, Any]:
    """Enroll, erase, log events and trials through ``rounds`` server crashes and kiosk
    kills; what was lost, doubled, or named after an erasure (all should be 0)."""
    from kiosk.site.connect import SiteUnreachable

    rng = random.Random(seed)
    images = np.random.default_rng(seed)
    with site_rig(kiosks, events_per_s=events_per_s, trial_every=trial_every, poll_s=1.0) as rig:
        operator_root = rig.root / "operator"
        store = ReplicaStore(operator_root, SiteState(operator_root))
        sync = SiteSync(rig.operator, store)
        names: dict[str, str] = {}  # uid -> name, every person ever enrolled
        erased_at: dict[str, float] = {}

        def enroll(label: str) -> None:
            crops = [NewPhoto(synthetic_crop(images)) for _ in range(2)]
            names[store.add_person(label, crops, _consent()).uid] = label

        def flush() -> bool:
            try:
                sync.sync_once()
                return True
            except SiteUnreachable:
                return False

        try:
            for index in range(people):
                enroll(f"resident {index}")
            flush()
            for kiosk in rig.kiosks:
                rig.spawn(kiosk)
            if _wait(lambda: all(k.count() == people for k in rig.kiosks), 120, 0.1) is None:
                raise UserError("the kiosks did not sync the first people")
            for round_ in range(rounds):
                enroll(f"visitor {round_}")
                living = [p for p in store.people() if p.name.startswith(("resident", "visitor"))]
                victim = rng.choice(living)
                store.delete(victim.name, reason="drill")
                erased_at[victim.uid] = time.time()
                flush()
                time.sleep(rng.uniform(0.0, 0.15))  # the kiosks are pulling: crash the server
                rig.cluster.stop("immediate")
                time.sleep(rng.uniform(0.1, 0.4))
                rig.cluster.start()
                time.sleep(rng.uniform(0.0, 0.5))  # events are being pushed: kill a kiosk
                kiosk = rng.choice(rig.kiosks)
                rig.kill(kiosk)
                time.sleep(rng.uniform(0.0, 0.3))
                rig.spawn(kiosk)
                kiosk.restarts += 1
                log(f"round {round_ + 1}: erased {victim.uid[:8]}, killed {kiosk.name}")
            while not flush() or store.site_state.counts()["queued"]:
                time.sleep(0.2)
            with rig.connect_operator() as conn:
                registry_people = Registry(conn).people_uids()
            converged = _wait(lambda: all(_uids(k) == registry_people for k in rig.kiosks), 60, 0.2)
            rig.stop_kiosks()
            for kiosk in rig.kiosks:  # a last start of each kiosk's sync pushes what is left
                drain = ReplicaStore(kiosk.root / "people", SiteState(kiosk.root / "people"))
                final = SiteSync(kiosk.config, drain, events_dir=kiosk.root / "events")
                try:
                    final.sync_once()
                finally:
                    final.close()
                    drain.close()
        finally:
            sync.close()
            store.close()
        with rig.cluster.connect(DBNAME) as conn:
            result = verify(rig, conn, names)
        result.update(
            rounds=rounds,
            kiosks=kiosks,
            server_crashes=rounds,
            kiosk_kills=sum(k.restarts for k in rig.kiosks),
            people_enrolled=len(names),
            people_erased=len(erased_at),
            converged_s=None if converged is None else round(converged, 2),
        )
        return result


def _uids(kiosk: KioskProcess) -> set[str]:
    with contextlib.closing(
        sqlite3.connect(f"file:{kiosk.people_db}?mode=ro", uri=True, timeout=5)
    ) as db:
        return {str(row[0]) for row in db.execute("SELECT uid FROM people")}


def verify(rig: SiteRig, conn: Any, names: dict[str, str]) -> dict[str, Any]:
    """Each kiosk's own records against the registry's (``conn``: the superuser's)."""
    from enroll.store import PeopleStore
    from kiosk.live.events import EVENT_LOG
    from kiosk.site.events import event_key
    from kiosk.trials.site import session_key
    from kiosk.trials.store import TrialStore

    uid_of = {name: uid for uid, name in names.items()}
    erased = {str(row[0]) for row in conn.execute("SELECT person_uid FROM tombstones")}
    totals = dict.fromkeys(
        [
            "events_logged",
            "events_lost",
            "events_doubled",
            "events_unknown",
            "events_of_erased_kept",
            "named_after_erasure",
            "trials_finished",
            "trials_lost",
            "trials_doubled",
            "trials_unknown",
        ],
        0,
    )
    for kiosk in rig.kiosks:
        lines = []
        log_path = kiosk.root / "events" / EVENT_LOG
        if log_path.exists():
            for raw in log_path.read_bytes().splitlines(keepends=True):
                if raw.endswith(b"\n"):
                    with contextlib.suppress(json.JSONDecodeError):
                        lines.append(json.loads(raw))

        def person(line: dict[str, Any]) -> str | None:
            return line.get("person_uid") or uid_of.get(line.get("name", ""))

        # The events of a person erased go from the registry with them (or never reach
        # it): they are not lost, and none may be kept.
        local = {event_key(kiosk.name, line) for line in lines}
        kept = {event_key(kiosk.name, line) for line in lines if person(line) not in erased}
        rows = conn.execute(
            "SELECT event_key::text, at, track_id FROM events WHERE kiosk_id = %s", (kiosk.name,)
        ).fetchall()
        remote = [row[0] for row in rows]
        totals["events_logged"] += len(local)
        totals["events_lost"] += len(kept - set(remote))
        totals["events_unknown"] += len(set(remote) - local)
        totals["events_of_erased_kept"] += len((local - kept) & set(remote))
        totals["events_doubled"] += len(rows) - len({(r[1], r[2]) for r in rows})
        with PeopleStore(kiosk.root / "people") as replica:
            applied = {e.subject: e.at for e in replica.audit() if e.action == "site-erase"}
        for line in lines:
            uid = person(line)
            if uid in applied and datetime.fromisoformat(line["time"]) > applied[uid]:
                totals["named_after_erasure"] += 1
        path = kiosk.root / "trials.sqlite"
        finished: set[tuple[str, float]] = set()
        with TrialStore(path) as trials:
            for info in trials.sessions():
                key = session_key(kiosk.name, path, info.id, info.created_at)
                for result in trials.load_session(info.id).results:
                    finished.add((key, result.started_at))
        rows = conn.execute(
            "SELECT session_key::text, started_at FROM trials WHERE kiosk_id = %s",
            (kiosk.name,),
        ).fetchall()
        stored = {(str(a), float(b)) for a, b in rows}
        totals["trials_finished"] += len(finished)
        totals["trials_lost"] += len(finished - stored)
        totals["trials_unknown"] += len(stored - finished)
        totals["trials_doubled"] += len(rows) - len(stored)
    return totals


# -- enrollment to a retrained bundle at every kiosk -------------------------------------


def run_retrain(
    people_dir: Path,
    kiosks: int = 2,
    model: str = "RN50",
    pretrained: str = "none",
    log: Log = _quiet,
) -> dict[str, Any]:
    """A site of ``people_dir``'s people but the last, trained once; then the last one is
    enrolled at the operator's kiosk, CLIP is retrained on the registry and published, and
    the time until every kiosk holds the new bundle is measured (`kiosk site train`'s
    path, with its feature cache warm as on a machine that trained before)."""
    from kiosk.build import detector
    from kiosk.config import KioskConfig
    from kiosk.setup.site import train_and_publish, train_bundle
    from models.align import CLIP_SIZE, align_face
    from models.io import read_image, scan_people

    folders, _ = scan_people(people_dir)
    if len(folders) < 3:
        raise UserError(f"{people_dir} needs at least 3 person folders")
    config = KioskConfig.model_validate({"clip": {"model": model, "pretrained": pretrained}})
    find = detector(config, input_size=config.train.detector_input_size)

    def crops(paths: list[Path]) -> list[NewPhoto]:
        found = []
        for path in paths:
            image = read_image(path)
            faces = find.detect(image, mode="largest")
            if faces:
                found.append(NewPhoto(align_face(image, faces[0].kps, CLIP_SIZE)))
        return found

    names = sorted(folders)
    with site_rig(kiosks, bundles=True) as rig:
        for kiosk in rig.kiosks:
            rig.spawn(kiosk)
        operator_root = rig.root / "operator"
        store = ReplicaStore(operator_root, SiteState(operator_root))
        sync = SiteSync(rig.operator, store)
        timings: dict[str, float] = {}

        def published_everywhere(digest: str, started: float) -> float:
            if (
                _wait(lambda: all(k.bundle_sha256() == digest for k in rig.kiosks), 600, 0.05)
                is None
            ):
                raise UserError("the kiosks did not receive the bundle within 600 s")
            return time.monotonic() - started

        reports: list[dict[str, Any]] = []

        def trainer(
            cfg: KioskConfig, replica: ReplicaStore, out: Log
        ) -> tuple[bytes, dict[str, Any]]:
            started = time.monotonic()
            data, report = train_bundle(cfg, replica, out)
            reports.append({**report, "wall_s": time.monotonic() - started})
            return data, report

        try:
            for name in names[:-1]:
                store.add_person(name, crops(folders[name]), _consent())
            sync.sync_once()
            started = time.monotonic()
            first = train_and_publish(config, sync, trainer, log)
            timings["first_training_s"] = published_everywhere(first["sha256"], started)
            first_s = timings["first_training_s"]
            log(f"{len(names) - 1} people trained and published in {first_s:.1f} s")
            photos = crops(folders[names[-1]])
            started = time.monotonic()
            store.add_person(names[-1], photos, _consent())
            sync.sync_once()
            timings["enrollment_pushed_s"] = time.monotonic() - started
            second = train_and_publish(config, sync, trainer, log)
            timings["retrain_and_publish_s"] = (
                time.monotonic() - started - timings["enrollment_pushed_s"]
            )
            timings["enrollment_to_bundle_everywhere_s"] = published_everywhere(
                second["sha256"], started
            )
        finally:
            sync.close()
            store.close()
        size = rig.kiosks[0].bundle.stat().st_size
    return {
        "people": len(names),
        "kiosks": kiosks,
        "clip": f"{model} ({pretrained})",
        "photos_of_new_person": len(photos),
        "bundle_bytes": size,
        "retrain_report": {
            k: v
            for k, v in reports[-1].items()
            if k in ("seconds", "feature_seconds", "finetune_seconds", "images", "people", "wall_s")
        },
        **{k: round(v, 2) for k, v in timings.items()},
    }
