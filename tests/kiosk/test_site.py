"""The site registry and its replicas, against a real PostgreSQL (the `postgres` fixture)."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from kiosk.bench.pgcluster import PgCluster
from kiosk.config import SiteConfig
from kiosk.site.replica import ReplicaStore
from kiosk.site.state import SiteState
from kiosk.site.sync import SiteSync
from models.errors import UserError
from tests.helpers import consent, photos, plain_bundle, site_kiosks


def kiosk(tmp_path: Path, name: str, config: SiteConfig, **kwargs: Any) -> SiteSync:
    root = tmp_path / name
    store = ReplicaStore(root, SiteState(root), retention_days=365)
    return SiteSync(config, store, **kwargs)


def close(*syncs: SiteSync) -> None:
    for sync in syncs:
        sync.close()
        sync.store.close()


def test_migrate_is_versioned_and_repeatable(postgres: PgCluster, site_db: str) -> None:
    from kiosk.site.schema import SCHEMA_VERSION, migrate, schema_version

    with postgres.connect(site_db) as conn:
        conn.autocommit = False
        assert schema_version(conn) == 0
        assert migrate(conn, create_roles=True) == (0, SCHEMA_VERSION)
        assert migrate(conn) == (SCHEMA_VERSION, SCHEMA_VERSION)
        conn.commit()
        tables = {
            r[0]
            for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        }
    assert {"people", "photos", "embeddings", "tombstones", "bundles", "events", "trials"} <= tables


def test_enrollment_reaches_another_kiosk_with_its_crops(
    postgres: PgCluster, site_db: str, tmp_path: Path
) -> None:
    sites = site_kiosks(postgres, site_db, desk="enroll", door="door")
    desk, door = kiosk(tmp_path, "desk", sites["desk"]), kiosk(tmp_path, "door", sites["door"])
    try:
        added = desk.store.add_person("Ada Lovelace", photos(3, seed=1), consent())
        vector = np.arange(128, dtype=np.float32)
        desk.store.cache_embeddings(added.uid, "mfn", [vector.tobytes()] * 3)
        assert desk.state.counts()["queued"] == 1
        assert desk.sync_once().pushed == 1
        assert desk.state.counts()["queued"] == 0
        report = door.sync_once()
        assert report.added == 1
        person = door.store.by_uid(added.uid)
        assert person is not None and person.name == "Ada Lovelace"
        here = [door.store.read_png(r) for r in door.store.photos("Ada Lovelace")]
        there = [desk.store.read_png(r) for r in desk.store.photos("Ada Lovelace")]
        assert here == there
        assert door.store.cached_embeddings(added.uid)["mfn"] == [vector.tobytes()] * 3
        assert door.gate.may_name("ada lovelace") and not door.gate.refusal()
        # Embeddings computed at the desk later (its gallery rebuild) are shared once.
        later = np.ones(128, dtype=np.float32).tobytes()
        desk.store.cache_embeddings(added.uid, "clip:RN50", [later] * 3)
        assert desk.sync_once().embeddings == 1
        assert desk.sync_once().embeddings == 0
        door.sync_once()
        assert door.store.cached_embeddings(added.uid)["clip:RN50"] == [later] * 3
        door.store.cache_embeddings(added.uid, "door-only", [later] * 3)
        assert door.sync_once().embeddings == 0  # a door role shares nothing
        # A second pull, and a retried push of the same enrollment, change nothing.
        assert door.sync_once().added == 0
        desk.state.enqueue(
            "person:again", "person", desk.store.record(person).to_json(), person.uid
        )
        desk.sync_once()
        with postgres.connect(site_db) as conn:
            assert conn.execute("SELECT count(*) FROM people").fetchone()[0] == 1
            assert conn.execute("SELECT count(*) FROM photos").fetchone()[0] == 3
    finally:
        close(desk, door)


def test_erasure_is_applied_first_and_nobody_erased_is_named(
    postgres: PgCluster, site_db: str, tmp_path: Path
) -> None:
    sites = site_kiosks(postgres, site_db, officer="operator", door="door")
    officer, door = (
        kiosk(tmp_path, "officer", sites["officer"]),
        kiosk(tmp_path, "door", sites["door"]),
    )
    try:
        ada = officer.store.add_person("Ada", photos(2, seed=1), consent())
        officer.store.add_person("Bob", photos(2, seed=2), consent())
        officer.sync_once()
        door.sync_once()
        assert door.gate.may_name("Ada") and door.gate.may_name("Bob")
        # Offline meanwhile: the door misses the erasure, and a new enrollment after it.
        officer.store.delete("Ada", reason="on request")
        officer.store.add_person("Cy", photos(2, seed=3), consent())
        officer.sync_once()
        with postgres.connect(site_db) as conn:
            assert (
                conn.execute(
                    "SELECT count(*) FROM photos WHERE person_uid = %s", (ada.uid,)
                ).fetchone()[0]
                == 0
            )
            assert conn.execute("SELECT count(*) FROM tombstones").fetchone()[0] == 1
        assert door.gate.may_name("Ada")  # it cannot know yet
        report = door.sync_once()
        assert (report.erased, report.added) == (1, 1)
        assert door.store.by_uid(ada.uid) is None
        assert not door.gate.may_name("Ada") and door.gate.may_name("Cy")
        assert [e.subject for e in door.store.audit()] == [ada.uid]  # by id, never by name
        assert not (door.store.photos_dir / ada.uid).exists()
    finally:
        close(officer, door)


def test_a_door_may_not_enroll_delete_or_read_other_doors(
    postgres: PgCluster, site_db: str, tmp_path: Path
) -> None:
    from kiosk.site.connect import connect
    from kiosk.site.registry import Registry

    sites = site_kiosks(postgres, site_db, desk="enroll", door="door", other="door")
    desk, door = kiosk(tmp_path, "desk", sites["desk"]), kiosk(tmp_path, "door", sites["door"])
    try:
        desk.store.add_person("Ada", photos(2, seed=1), consent())
        desk.sync_once()
        door.sync_once()
        # Erasing at a door: done here at once (privacy first), refused by the registry.
        door.store.delete("Ada")
        report = door.sync_once()
        assert report.rejected == 1
        [(kind, _, reason)] = door.state.rejected()
        assert kind == "delete" and "may not" in reason
        with postgres.connect(site_db) as conn:
            assert conn.execute("SELECT count(*) FROM people").fetchone()[0] == 1
        # The desk may enroll but not erase either.
        desk.store.delete("Ada")
        assert desk.sync_once().rejected == 1
        # A door cannot enroll.
        door.store.add_person("Eve", photos(2, seed=5), consent())
        assert door.sync_once().rejected == 1
        assert door.store.people() == []  # the refused enrollment is not kept here either
        # Events: each kiosk sees only its own; no kiosk can write as another.
        event = {
            "key": "00000000-0000-0000-0000-000000000001",
            "person_uid": None,
            "confidence": 0.9,
            "time": datetime.now(UTC).isoformat(),
            "track_id": 1,
        }
        with connect(sites["door"]) as conn:
            assert Registry(conn).add_events([event]) == 1
            assert Registry(conn).add_events([event]) == 0  # the same key again: kept once
        with connect(sites["other"]) as conn:
            assert conn.execute("SELECT count(*) FROM events").fetchone()[0] == 0
            import psycopg

            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(
                    "INSERT INTO events (event_key, kiosk_id, confidence, at, track_id)"
                    " VALUES (gen_random_uuid(), %s, 1, now(), 1)",
                    (sites["door"].user,),
                )
        with connect(sites["door"]) as conn:
            assert conn.execute("SELECT count(*) FROM events").fetchone()[0] == 1
    finally:
        close(desk, door)


def test_a_rename_stands_through_the_sync_that_pushes_it(
    postgres: PgCluster, site_db: str, tmp_path: Path
) -> None:
    """A rename at the desk is never undone by the older change its sync pulls first
    (the desk's own enrollment, which it has not pulled yet); one a door may not make
    is refused, and the door shows the site's name again."""
    sites = site_kiosks(postgres, site_db, desk="enroll", door="door")
    desk, door = kiosk(tmp_path, "desk", sites["desk"]), kiosk(tmp_path, "door", sites["door"])
    try:
        ada = desk.store.add_person("Ada", photos(2, seed=1), consent())
        assert desk.sync_once().pushed == 1  # pushed after the pull: not pulled back yet
        desk.store.rename("Ada", "Ada Lovelace")
        desk.sync_once()  # pulls Ada's enrollment, then pushes the rename
        assert [p.name for p in desk.store.people()] == ["Ada Lovelace"]
        door.sync_once()
        assert [p.name for p in door.store.people()] == ["Ada Lovelace"]

        door.store.rename("Ada Lovelace", "Countess")
        report = door.sync_once()
        assert report.rejected == 1
        [(kind, _, reason)] = door.state.rejected()
        assert kind == "rename" and "may not" in reason
        assert door.store.by_uid(ada.uid).name == "Ada Lovelace"  # type: ignore[union-attr]
        assert door.gate.uid_of("Ada Lovelace") == ada.uid
        assert door.gate.uid_of("Countess") is None
    finally:
        close(desk, door)


def test_offline_kiosk_queues_then_pushes(
    postgres: PgCluster, site_db: str, tmp_path: Path
) -> None:
    from kiosk.site.connect import SiteUnreachable

    sites = site_kiosks(postgres, site_db, desk="enroll")
    nowhere = sites["desk"].model_copy(update={"host": str(tmp_path / "no-server")})
    offline = kiosk(tmp_path, "desk", nowhere)
    person = offline.store.add_person("Ada", photos(2, seed=1), consent())
    with pytest.raises(SiteUnreachable):
        offline.sync_once()
    assert offline.gate.started and offline.state.counts()["queued"] == 1
    assert offline.store.by_uid(person.uid) is not None  # served from the replica meanwhile
    close(offline)
    online = kiosk(tmp_path, "desk", sites["desk"])
    try:
        assert online.sync_once().pushed == 1
        assert online.state.counts() == {"queued": 0, "rejected": 0}
        assert online.store.by_uid(person.uid) is not None
    finally:
        close(online)


def test_a_stale_replica_names_nobody() -> None:
    from kiosk.site.replica import ReplicaGate

    now = datetime.now(UTC)
    gate = ReplicaGate(timedelta(hours=24))
    assert "connecting" in gate.refusal(now)
    gate.started = True
    assert "never synced" in gate.refusal(now)
    gate.synced(now - timedelta(hours=23), 5)
    assert gate.refusal(now) == ""
    gate.synced(now - timedelta(hours=25), 5)
    assert "25.0 h old" in gate.refusal(now)


def test_gated_recognizer_refuses_names() -> None:
    from kiosk.live.holder import RecognizerHolder
    from kiosk.site.replica import ReplicaGate
    from models.recognition import Prediction

    class Fixed:
        people = ("Ada", "Bob")
        threshold = 0.5

        def align(self, image: Any, face: Any) -> Any:
            return image

        def predict(self, crops: Any) -> list[Prediction]:
            return [Prediction("Ada", "Ada", 0.9), Prediction("Bob", "Bob", 0.9)]

    gate = ReplicaGate(timedelta(hours=1))
    holder = RecognizerHolder(Fixed, policy=gate)
    assert [p.name for p in holder.current().predict([1, 2])] == [None, None]
    assert "connecting" in holder.last_error
    gate.started = True
    gate.synced(datetime.now(UTC), 1)

    class P:
        def __init__(self, uid: str, name: str) -> None:
            self.uid, self.name = uid, name

    gate.refresh([P("a" * 32, "Ada"), P("b" * 32, "Bob")])  # type: ignore[list-item]
    assert [p.name for p in holder.current().predict([1, 2])] == ["Ada", "Bob"]
    assert holder.last_error == ""
    gate.block(["a" * 32])
    predictions = holder.current().predict([1, 2])
    assert [(p.name, p.best) for p in predictions] == [(None, ""), ("Bob", "Bob")]
    # A bundle that learnt "Bob" from another person than the replica's Bob: refused.
    gate.use_bundle({"bob": "c" * 32})
    assert holder.current().predict([1, 2])[1].name is None


def test_bundles_are_published_verified_and_written_atomically(
    postgres: PgCluster, site_db: str, tmp_path: Path
) -> None:
    from kiosk.site.connect import connect
    from kiosk.site.registry import Registry

    sites = site_kiosks(postgres, site_db, trainer="operator", door="door")
    bundle = tmp_path / "door" / "recognizer.bundle"
    door = kiosk(tmp_path, "door", sites["door"], bundle_path=bundle)
    try:
        with connect(sites["trainer"]) as conn:
            registry = Registry(conn)
            assert registry.publish_bundle(b"first", {"ada": "a" * 32}, {}) == 1
            assert registry.publish_bundle(b"second", {"ada": "a" * 32}, {}) == 2
            import psycopg

            with (
                connect(sites["door"]) as door_conn,
                pytest.raises(psycopg.errors.InsufficientPrivilege),
            ):
                Registry(door_conn).publish_bundle(b"x", {}, {})
        report = door.sync_once()
        assert report.bundle == 2 and bundle.read_bytes() == b"second"
        assert door.state.sync_state().bundle_version == 2
        assert door.sync_once().bundle is None  # nothing new
        assert [p.name for p in bundle.parent.iterdir() if p.name.startswith(".")] == []
        with postgres.connect(site_db) as conn:
            conn.execute("UPDATE bundles SET data = 'tampered'")
            conn.execute("SELECT pg_notify('x', '')")
        with connect(sites["trainer"]) as conn:
            Registry(conn).publish_bundle(b"third", {}, {})
        with postgres.connect(site_db) as conn:
            conn.execute("UPDATE bundles SET data = 'tampered' WHERE version = 3")
        with pytest.raises(UserError, match="checksum"):
            door.sync_once()
        assert bundle.read_bytes() == b"second"
    finally:
        close(door)


def test_password_from_the_environment_over_tls_settings(
    postgres: PgCluster, site_db: str, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    from kiosk.site.connect import PASSWORD_ENV, SiteUnreachable, connect, describe

    sites = site_kiosks(postgres, site_db, door="door")
    tcp = sites["door"].model_copy(update={"host": "127.0.0.1", "sslmode": "disable"})
    secret = f"pw-{tcp.user}"
    monkeypatch.setenv(PASSWORD_ENV, "wrong")
    with pytest.raises(SiteUnreachable) as refused:
        connect(tcp)
    assert "wrong" not in str(refused.value) and secret not in str(refused.value)
    monkeypatch.setenv(PASSWORD_ENV, secret)
    with connect(tcp) as conn:
        assert conn.execute("SELECT current_user").fetchone()[0] == tcp.user
    # sslmode is passed through: the test server has no TLS, so `require` must fail.
    with pytest.raises(SiteUnreachable):
        connect(tcp.model_copy(update={"sslmode": "require"}))
    assert secret not in describe(tcp)


def test_a_password_in_the_config_file_is_refused_without_echo(tmp_path: Path) -> None:
    from kiosk.config import load_config

    path = tmp_path / "config.toml"
    path.write_text('[site]\nuser = "door1"\npassword = "hunter2-secret"\n', encoding="utf-8")
    with pytest.raises(UserError) as refused:
        load_config(path)
    assert "KIOSK_SITE_PASSWORD" in str(refused.value)
    assert "hunter2" not in str(refused.value)
    assert load_config(None).site is None  # no [site]: a single kiosk


def test_the_worker_follows_notifications(
    postgres: PgCluster, site_db: str, tmp_path: Path
) -> None:
    sites = site_kiosks(postgres, site_db, officer="operator", door="door")
    officer = kiosk(tmp_path, "officer", sites["officer"])
    door = kiosk(tmp_path, "door", sites["door"].model_copy(update={"poll_s": 60.0}))
    try:
        ada = officer.store.add_person("Ada", photos(2, seed=1), consent())
        officer.sync_once()
        door.start()
        assert door.wait_started(10)
        officer.store.delete("Ada")
        officer.sync_once()
        deadline = time.monotonic() + 10  # NOTIFY, not the 60 s poll, brings it
        while door.store.by_uid(ada.uid) is not None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert door.store.by_uid(ada.uid) is None
        assert not door.gate.may_name("Ada")
    finally:
        close(officer, door)


def test_door_events_are_pushed_once_by_person_id(
    postgres: PgCluster, site_db: str, tmp_path: Path
) -> None:
    from kiosk.live.events import EventLog

    sites = site_kiosks(postgres, site_db, desk="enroll", door="door")
    desk = kiosk(tmp_path, "desk", sites["desk"])
    events = tmp_path / "events"
    door = kiosk(tmp_path, "door", sites["door"], events_dir=events)
    try:
        ada = desk.store.add_person("Ada", photos(2, seed=1), consent())
        desk.sync_once()
        door.sync_once()
        log = EventLog(events)
        thumb = np.zeros((8, 8, 3), dtype=np.uint8)
        log.append(ada.uid, "Ada", 0.93, 1, thumb)
        log.append(ada.uid, "Ada", 0.91, 2, thumb)
        with open(log.path, "ab") as handle:  # a line still being written
            handle.write(b'{"name": "Ada", "confidence": 0.9')
        assert door.sync_once().events == 2
        # A push repeated from the start (a crash before the offset was saved): no double.
        door.state.pushed_events("", 0)
        door.sync_once()
        with postgres.connect(site_db) as conn:
            rows = conn.execute("SELECT person_uid, kiosk_id, track_id FROM events").fetchall()
        assert sorted(rows) == [(ada.uid, sites["door"].user, 1), (ada.uid, sites["door"].user, 2)]
        assert door.events_behind() > 0  # the torn line waits for its end
    finally:
        close(desk, door)


def test_trials_of_every_kiosk_make_one_site_report(
    postgres: PgCluster, site_db: str, tmp_path: Path
) -> None:
    from kiosk.site.connect import connect
    from kiosk.site.registry import Registry
    from kiosk.trials.site import SiteTrialStore, site_session
    from models.recognition import Prediction

    sites = site_kiosks(postgres, site_db, a="door", b="door", officer="operator")
    for name in ("a", "b"):
        sync = kiosk(tmp_path, name, sites[name])
        with SiteTrialStore(
            tmp_path / f"{name}.sqlite", SiteState(tmp_path / name), sites[name].user
        ) as store:
            session = store.create_session(label="door", duration=1.0, threshold=0.5, min_share=0.5)
            session.add_participant("Ada", enrolled=True)
            session.start("Ada", now=0.0, wall_clock=100.0)
            session.add_frame(0.1, Prediction("Ada", "Ada", 0.9))
            session.finish()
        assert sync.sync_once().pushed == 1
        sync.state.enqueue("trial:again", "trial", b"{}")  # a malformed push is refused, once
        assert sync.sync_once().rejected == 1
        close(sync)
    with connect(sites["a"]) as conn:
        assert len(Registry(conn).trials()) == 1  # a door sees its own trials only
    with connect(sites["officer"]) as conn:
        trials = Registry(conn).trials()
    session, extra = site_session(trials)
    assert extra["trials_per_kiosk"] == {sites["a"].user: 1, sites["b"].user: 1}
    assert session.metrics().tp == 2
    # The site report's header names the site and every kiosk with its trials.
    from kiosk.config import KioskConfig
    from kiosk.trials.runs import Outputs
    from kiosk.trials.site import site_report

    config = KioskConfig.model_validate({"site": sites["officer"].model_dump(mode="json")})
    summary, _ = site_report(config, Outputs(json=tmp_path / "site.json"))
    header = summary["header"]
    assert header["site"].startswith(f"{sites['officer'].dbname} on ")
    assert header["kiosk"] == f"{sites['a'].user} (1), {sites['b'].user} (1)"
    assert header["created_at"] == 100.0 and header["date"]
    # Recorded for erasure, as a site report: the registry's trials make it again.
    from kiosk.trials.runs import default_database
    from kiosk.trials.store import TrialStore
    from models.names import mention_digests, name_digest

    with TrialStore(default_database(config)) as store:
        [record] = store.reports()
    assert record.path == (tmp_path / "site.json").resolve() and record.session_id is None
    # the names in it, and every name its trials' sources ("door_a: ...") may mention
    mentioned = {digest for r in session.results for digest in mention_digests(r.source)}
    assert record.names == {name_digest("Ada")} | mentioned and record.site_until is not None
    assert record.site_until == max(t["received"] for t in trials)


def test_site_train_publishes_a_bundle_that_a_door_hot_swaps(
    postgres: PgCluster,
    site_db: str,
    tmp_path: Path,
    tiny_clip: str,
    model_dir: Path,
    shared: Any,
) -> None:
    """An existing store is uploaded, CLIP is trained from the registry's crops on one
    machine, and a door kiosk receives the bundle and names with it through its gate."""
    from kiosk.build import recognizer_holder
    from kiosk.config import KioskConfig
    from kiosk.setup.site import site_session, train_and_publish, upload
    from models.detector import FaceDetector
    from tests.helpers import enroll_from_video

    detector = FaceDetector.from_name("scrfd_2.5g", model_dir, input_size=320)
    sites = site_kiosks(postgres, site_db, trainer="operator", door="door")
    store_dir = tmp_path / "trainer"
    for name, clip in (("Ada", "solo_01"), ("Bob", "solo_02"), ("Cy", "solo_03")):
        enroll_from_video(store_dir, name, shared("videos", f"{clip}.mp4"), detector, photos=4)
    config = KioskConfig.model_validate(
        {
            "site": sites["trainer"].model_dump(mode="json"),
            "enroll": {"store_dir": str(store_dir)},
            "clip": {"model": tiny_clip, "pretrained": "none"},
            "train": {"epochs": 2, "min_images": 2},
        }
    )
    with site_session(config) as sync:
        assert upload(sync) == 3
        published = train_and_publish(config, sync)
    assert published["version"] == 1 and published["people"] == 3
    bundle = tmp_path / "door.bundle"
    door_config = KioskConfig.model_validate(
        {
            "site": sites["door"].model_dump(mode="json"),
            "enroll": {"store_dir": str(tmp_path / "door")},
            "clip": {"model": tiny_clip, "pretrained": "none"},
            "recognizer": {"kind": "clip", "bundle": str(bundle)},
        }
    )
    from kiosk.build import site_sync

    site = site_sync(door_config)
    assert site is not None
    holder = recognizer_holder(door_config, site=site)
    try:
        assert bundle.is_file() and site.state.sync_state().bundle_version == 1
        assert sorted(holder.current().people) == ["Ada", "Bob", "Cy"]
        assert holder.last_error == ""
        assert all(site.gate.may_name(n) for n in ("Ada", "Bob", "Cy"))
    finally:
        holder.stop()


def test_an_encrypted_site_seals_crops_in_the_registry(
    postgres: PgCluster, site_db: str, tmp_path: Path
) -> None:
    from enroll.keys import new_key
    from kiosk.site.connect import SiteRefused

    sites = site_kiosks(postgres, site_db, desk="enroll", door="door", other="door")
    key = new_key().encode()
    sealed = {k: v.model_copy(update={"encrypt": True}) for k, v in sites.items()}
    desk = kiosk(tmp_path, "desk", sealed["desk"], sealer_key=key)
    door = kiosk(tmp_path, "door", sealed["door"], sealer_key=key)
    wrong = kiosk(tmp_path, "other", sealed["other"], sealer_key=new_key().encode())
    try:
        ada = desk.store.add_person("Ada", photos(2, seed=1), consent())
        desk.sync_once()
        with postgres.connect(site_db) as conn:
            crop = bytes(conn.execute("SELECT crop FROM photos LIMIT 1").fetchone()[0])
        assert not crop.startswith(b"\x89PNG")  # sealed, not a readable image
        assert door.sync_once().added == 1
        assert door.store.read_png(door.store.photos("Ada")[0]).startswith(b"\x89PNG")
        with pytest.raises(SiteRefused, match="same \\$KIOSK_STORE_KEY"):
            wrong.sync_once()
        assert wrong.store.by_uid(ada.uid) is None
        with pytest.raises(UserError, match="no key"):
            kiosk(tmp_path, "nokey", sealed["other"])
    finally:
        close(desk, door, wrong)


def test_a_pull_reads_one_snapshot(postgres: PgCluster, site_db: str, tmp_path: Path) -> None:
    """Changes committed while a pull runs wait for the next pull: the snapshot holds."""
    from kiosk.site.connect import connect
    from kiosk.site.registry import Registry

    sites = site_kiosks(postgres, site_db, officer="operator", door="door")
    officer = kiosk(tmp_path, "officer", sites["officer"])
    door = kiosk(tmp_path, "door", sites["door"])
    try:
        officer.store.add_person("Ada", photos(2, seed=1), consent())
        officer.sync_once()
        seen: list[str] = []
        original = door.store.apply_person

        def apply_and_meanwhile(record: Any) -> bool:
            seen.append(record.name)
            isolation = door._conn.execute("SHOW transaction_isolation").fetchone()[0]
            assert isolation == "repeatable read"
            with connect(sites["officer"]) as conn:  # committed during the pull
                Registry(conn).erase(record.uid, "meanwhile")
            return original(record)

        door.store.apply_person = apply_and_meanwhile  # type: ignore[method-assign]
        report = door.sync_once()
        assert seen == ["Ada"] and report.added == 1 and report.erased == 0
        door.store.apply_person = original  # type: ignore[method-assign]
        assert door.sync_once().erased == 1  # the next pull has it, first
        assert door.store.people() == []
    finally:
        close(officer, door)


# -- erasure that reaches every kiosk's trials and door events --------------------------

GRACE, ALAN = "Grace Hopper", "Alan Turing"  # spaces: never found by chance in hex or base64


def test_an_erasure_makes_a_site_report_again_once_the_registry_erased_the_person(
    postgres: PgCluster, site_db: str, tmp_path: Path
) -> None:
    """A site report naming Grace is made again from the registry's anonymised trials
    once the registry erased her: the same trials (not one pushed since), every figure
    as it was. Erased at a door first, whose role may not erase her from the site, the
    door's own site report is removed: nothing could make it without her name."""
    import re

    from kiosk.config import KioskConfig
    from kiosk.erasure import erase_traces
    from kiosk.trials.runs import Outputs
    from kiosk.trials.site import SiteTrialStore, site_report

    sites = site_kiosks(postgres, site_db, officer="operator", door="door")
    officer = kiosk(tmp_path, "officer", sites["officer"])
    door = kiosk(tmp_path, "door", sites["door"])

    def config(key: str) -> KioskConfig:
        return KioskConfig.model_validate(
            {
                "site": sites[key].model_dump(mode="json"),
                "enroll": {"store_dir": str(tmp_path / key)},
                "trials": {"database": str(tmp_path / f"{key}-trials.sqlite")},
            }
        )

    def door_trial(label: str, participant: str, answers: list[str | None], at: float) -> None:
        state = SiteState(tmp_path / "door")
        with SiteTrialStore(tmp_path / "door.sqlite", state, sites["door"].user) as store:
            session = store.create_session(label=label, duration=1.0, threshold=0.5, min_share=0.5)
            session.add_participant(participant, enrolled=True)
            run_trial(session, participant, answers, at)

    try:
        grace = officer.store.add_person(GRACE, photos(2, seed=1), consent())
        officer.store.add_person(ALAN, photos(2, seed=2), consent())
        officer.sync_once()
        door.sync_once()
        door_trial("grace", GRACE, [GRACE, GRACE], 100.0)
        door_trial("alan", ALAN, [GRACE, ALAN, ALAN], 101.0)  # misidentified as her
        assert door.sync_once().pushed == 2
        reports = {key: tmp_path / f"{key}-site.json" for key in ("officer", "door")}
        csv = tmp_path / "officer-site.csv"
        site_report(config("officer"), Outputs(json=reports["officer"], csv=csv))
        site_report(config("door"), Outputs(json=reports["door"]))
        before = reports["officer"].read_text()
        assert GRACE in before and GRACE in csv.read_text()
        door_trial("later", ALAN, [ALAN], 102.0)  # pushed after the reports: not in them
        assert door.sync_once().pushed == 1

        # At the door: gone there, refused by the registry, the report removed.
        door.store.delete(GRACE)
        assert door.sync_once().rejected == 1
        [erasure] = door.store.pending_erasures()
        erased = erase_traces(config("door"), erasure)
        assert erased.complete and (erased.reports, erased.reports_removed) == (0, 1)
        assert not reports["door"].exists()

        # At the operator's kiosk: erased from the site, the report made again.
        officer.store.delete(GRACE)
        assert officer.sync_once().pushed == 1
        [erasure] = officer.store.pending_erasures()
        assert erasure.uid == grace.uid
        erased = erase_traces(config("officer"), erasure)
        assert erased.complete and (erased.reports, erased.reports_removed) == (2, 0)
        after = reports["officer"].read_text()
        assert "Grace" not in after and "Grace" not in csv.read_text()
        [label] = set(re.findall(r"erased person [0-9a-f]{8}", after))
        assert after == before.replace(GRACE, label)  # the same trials, the same figures
        # Recorded again: a later erasure finds it, and nobody it no longer names.
        from kiosk.trials.store import TrialStore
        from models.names import name_digest

        with TrialStore(tmp_path / "officer-trials.sqlite") as store:
            names = set().union(*(r.names for r in store.reports()))
        assert name_digest(ALAN) in names and name_digest(GRACE) not in names
    finally:
        close(officer, door)


def registry_rows(postgres: PgCluster, site_db: str) -> dict[str, list[str]]:
    """Every row of every table of the registry, as text (read by the owner, whom
    row-level security does not hide anything from)."""
    with postgres.connect(site_db) as conn:
        tables = [
            str(row[0])
            for row in conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1"
            )
        ]
        return {t: [str(r[0]) for r in conn.execute(f"SELECT x::text FROM {t} x")] for t in tables}


def holding(rows: dict[str, list[str]], *needles: str) -> dict[str, int]:
    """Table -> how many of its rows hold one of ``needles`` (case-folded; bytea shown
    as hex is searched for the needle's UTF-8 bytes too)."""
    wanted = [n.casefold() for n in needles] + [n.encode().hex() for n in needles]
    found = {t: sum(any(w in row.casefold() for w in wanted) for row in r) for t, r in rows.items()}
    return {t: n for t, n in found.items() if n}


def run_trial(
    session: Any, participant: str, answers: list[str | None], at: float, source: str = ""
) -> None:
    """One trial: each frame's prediction accepts the name given (None: a stranger whose
    nearest enrolled person is Grace)."""
    from models.recognition import Prediction

    session.start(participant, now=0.0, wall_clock=at, source=source)
    for i, name in enumerate(answers):
        best = name or GRACE
        session.add_frame(0.1 * (i + 1), Prediction(name, best, 0.9 if name else 0.3))
    session.finish()


def test_an_erasure_reaches_every_kiosks_trials_and_door_events(
    postgres: PgCluster, site_db: str, tmp_path: Path
) -> None:
    """Two doors push trials and door events of Grace and Alan, in sessions and from
    clips whose labels and file names name her too; Grace is renamed, then erased at
    the operator's kiosk. Nothing in any table of the registry holds her name or id but
    her tombstone; the site's trial metrics are as they were."""
    from kiosk.live.events import EventLog
    from kiosk.site.connect import connect
    from kiosk.site.registry import Registry
    from kiosk.trials.site import SiteTrialStore, site_session

    sites = site_kiosks(postgres, site_db, officer="operator", a="door", b="door")
    officer = kiosk(tmp_path, "officer", sites["officer"])
    doors = {k: kiosk(tmp_path, k, sites[k], events_dir=tmp_path / k / "events") for k in "ab"}
    try:
        grace = officer.store.add_person(GRACE, photos(2, seed=1), consent())
        alan = officer.store.add_person(ALAN, photos(2, seed=2), consent())
        officer.sync_once()
        thumb = np.zeros((8, 8, 3), dtype=np.uint8)
        for k, door in doors.items():
            door.sync_once()
            events = EventLog(door.events_dir)  # type: ignore[arg-type]
            events.append(grace.uid, GRACE, 0.93, 1, thumb)
            events.append(alan.uid, ALAN, 0.91, 2, thumb)
            with SiteTrialStore(
                tmp_path / f"{k}.sqlite", SiteState(tmp_path / k), door.config.user
            ) as store:
                session = store.create_session(
                    label=f"{k}: {GRACE.upper()} and Alan",
                    duration=1.0,
                    threshold=0.5,
                    min_share=0.5,
                )
                session.add_participant(GRACE, enrolled=True)
                session.add_participant(ALAN, enrolled=True)
                run_trial(session, GRACE, [GRACE, GRACE], 100.0, "/clips/grace_hopper_walk.mp4")
                run_trial(session, ALAN, [GRACE, GRACE, ALAN], 101.0)  # misidentified
                run_trial(session, ALAN, [ALAN, None], 102.0, "/clips/alan-turing.mp4")
            assert door.sync_once().pushed == 3
        # Renamed after the trials were pushed: they are found by her id.
        officer.store.rename(GRACE, "Grace B. Hopper")
        officer.sync_once()
        # A trial pushed by a kiosk that did not say who the names are (an older program):
        # found by her current name.
        old_session = {
            "key": "00000000-0000-0000-0000-0000000000ab",
            "label": "old kiosk: grace b. hopper's day",
            "created_at": 1.0,
            "duration": 1.0,
            "threshold": 0.5,
            "min_share": 0.5,
            "recognizer": "",
        }
        with connect(sites["a"]) as conn:
            Registry(conn).add_trial(
                {
                    "key": "00000000-0000-0000-0000-0000000000aa",
                    "session": old_session,
                    "participant": "grace b. hopper",
                    "enrolled": 1,
                    "started_at": 103.0,
                    "duration": 1.0,
                    "answer": "Grace B. Hopper",
                    "outcome": "TP",
                    "misidentified": False,
                    "source": "C:\\clips\\GraceHopper.mp4",
                    "frames": [[0.1, True, "Grace B. Hopper", 0.9, 0.5, "Grace B. Hopper", None]],
                }
            )
            # An attack trial, whose participant's name mentions her.
            Registry(conn).add_trial(
                {
                    "key": "00000000-0000-0000-0000-0000000000ac",
                    "session": old_session,
                    "participant": "photo of Grace Hopper",
                    "enrolled": 2,
                    "started_at": 104.0,
                    "duration": 1.0,
                    "answer": None,
                    "outcome": "TN",
                    "misidentified": False,
                    "source": "",
                    "frames": [[0.1, True, "Grace B. Hopper", 0.3, 0.5, None, False]],
                }
            )
        rows = registry_rows(postgres, site_db)
        assert holding(rows, GRACE, "Grace B. Hopper", "grace_hopper", "GraceHopper").keys() == {
            "people",
            "trial_sessions",
            "trials",
            "trial_frames",
            "trial_people",
        }
        assert holding(rows, grace.uid).keys() >= {"people", "events", "trial_people", "changes"}
        with connect(sites["officer"]) as conn:
            before = site_session(Registry(conn).trials())[0]

        officer.store.delete("Grace B. Hopper")
        assert officer.sync_once().pushed == 1

        rows = registry_rows(postgres, site_db)
        assert holding(rows, "Grace", "Hopper") == {}
        with postgres.connect(site_db) as conn:
            [(label,)] = conn.execute("SELECT label FROM tombstones").fetchall()
            texts = sorted(
                conn.execute(
                    "SELECT s.label, t.source FROM trials t JOIN trial_sessions s"
                    " USING (session_key) WHERE t.source <> ''"
                ).fetchall()
            )
        assert texts == [  # only the mentions went, and the metrics' labels are hers
            (f"a: {label} and Alan", "/clips/alan-turing.mp4"),
            (f"a: {label} and Alan", f"/clips/{label}_walk.mp4"),
            (f"b: {label} and Alan", "/clips/alan-turing.mp4"),
            (f"b: {label} and Alan", f"/clips/{label}_walk.mp4"),
            (f"old kiosk: {label}'s day", f"C:\\clips\\{label}.mp4"),
        ]
        # Her id stays in the tombstone, nowhere else.
        assert holding(rows, grace.uid).keys() == {"tombstones"}
        assert holding(rows, alan.uid).keys() == {
            "people",
            "photos",
            "events",
            "trial_people",
            "changes",
        }
        assert len(rows["events"]) == 2  # Alan's, one per door
        with connect(sites["officer"]) as conn:
            after = site_session(Registry(conn).trials())[0]
            participants = {t["participant"] for t in Registry(conn).trials()}
        assert label.startswith("erased person ")
        assert participants == {ALAN, label, f"photo of {label}"}
        assert after.metrics() == before.metrics()
        assert after.metrics().tp == 5 and after.metrics().misidentified == 2
        # Every trial of hers, and every frame that named her, has the one label.
        assert sorted(r.answer or "" for r in after.results).count(label) == 5
    finally:
        close(officer, *doors.values())


def test_an_erasure_takes_the_person_out_of_every_published_bundle(
    postgres: PgCluster, site_db: str, tmp_path: Path
) -> None:
    """Grace is in both bundles the registry keeps: the newest, which this program
    cannot read, goes; the other one is published again without her under its version
    (Alan's text embedding as it was), and a door that joins later receives that one."""
    import dataclasses

    from kiosk.site.connect import connect
    from kiosk.site.registry import Registry
    from models.clip.bundle import bundle_bytes, bundle_from_bytes, load_bundle
    from models.names import name_key

    sites = site_kiosks(postgres, site_db, officer="operator", door="door")
    officer = kiosk(tmp_path, "officer", sites["officer"])
    door = None
    try:
        grace = officer.store.add_person(GRACE, photos(2, seed=1), consent())
        alan = officer.store.add_person(ALAN, photos(2, seed=2), consent())
        officer.sync_once()
        both = dataclasses.replace(
            plain_bundle([GRACE, ALAN]),
            person_ids=[grace.uid, alan.uid],
            text_embeddings=np.array([[1, 0, 0, 0], [0, 1, 0, 0]], np.float32),
            text_state={"w": np.ones(3, np.float32)},
        )
        people = {name_key(GRACE): grace.uid, name_key(ALAN): alan.uid}
        with connect(sites["officer"]) as conn:
            registry = Registry(conn)
            assert registry.publish_bundle(bundle_bytes(both), people, {"images": 4}) == 1
            assert registry.publish_bundle(b"of another program", people, {}) == 2
        with postgres.connect(site_db) as conn:
            [published_seq] = conn.execute("SELECT seq FROM bundles WHERE version = 1").fetchone()
        assert holding(registry_rows(postgres, site_db), GRACE).keys() >= {"bundles", "people"}

        officer.store.delete(GRACE)
        assert officer.sync_once().pushed == 1

        rows = registry_rows(postgres, site_db)
        assert holding(rows, "Grace", "Hopper") == {}
        assert holding(rows, grace.uid).keys() == {"tombstones"}
        assert len(rows["bundles"]) == 1
        with connect(sites["officer"]) as conn:
            kept = Registry(conn).bundle(1)
        assert kept is not None and kept.people == {name_key(ALAN): alan.uid}
        pruned = bundle_from_bytes(kept.data, "bundle 1")
        assert pruned.people == [ALAN] and pruned.person_ids == [alan.uid]
        assert pruned.text_embeddings.tolist() == [[0, 1, 0, 0]]
        assert pruned.text_state == {}  # learnt from her photos too
        with postgres.connect(site_db) as conn:
            assert conn.execute("SELECT meta, seq FROM bundles").fetchone() == (
                {"images": 4},
                published_seq,
            )

        bundle = tmp_path / "door" / "recognizer.bundle"
        door = kiosk(tmp_path, "door", sites["door"], bundle_path=bundle)
        assert door.sync_once().bundle == 1
        assert load_bundle(bundle).person_ids == [alan.uid]
    finally:
        close(officer, *([door] if door else []))


def test_vacuum_leaves_no_old_row_of_an_erased_person_in_the_servers_files(
    postgres: PgCluster, site_db: str, tmp_path: Path
) -> None:
    """An erasure deletes Grace's rows; PostgreSQL keeps their old versions in the
    tables' files. `kiosk site vacuum`'s rewrite, which only the owner may run, leaves
    none there (the write-ahead log and backups are the server's to expire)."""
    from kiosk.site.connect import connect
    from kiosk.site.schema import vacuum

    def on_disk(needle: bytes) -> list[str]:
        with postgres.connect(site_db) as conn:
            conn.execute("CHECKPOINT")  # the server's buffers, written to its files
            [oid] = conn.execute(
                "SELECT oid FROM pg_database WHERE datname = %s", (site_db,)
            ).fetchone()
        files = (postgres.data / "base" / str(oid)).iterdir()
        return [path.name for path in files if needle in path.read_bytes()]

    sites = site_kiosks(postgres, site_db, officer="operator")
    officer = kiosk(tmp_path, "officer", sites["officer"])
    try:
        officer.store.add_person(GRACE, photos(2, seed=1), consent())
        officer.store.add_person(ALAN, photos(2, seed=2), consent())
        officer.sync_once()
        officer.store.delete(GRACE)
        assert officer.sync_once().pushed == 1
        assert on_disk(GRACE.encode())  # her deleted rows, in the tables' files
        with connect(sites["officer"]) as conn, pytest.raises(UserError, match="owner"):
            vacuum(conn)
        with postgres.connect(site_db) as conn:
            assert "people" in vacuum(conn)
        assert on_disk(GRACE.encode()) == []
        assert on_disk(ALAN.encode())  # the living are kept
    finally:
        close(officer)


def test_what_a_kiosk_pushes_after_an_erasure_never_brings_the_person_back(
    postgres: PgCluster, site_db: str, tmp_path: Path
) -> None:
    """A door offline during Grace's erasure queued a trial and logged door events of
    hers; when it reconnects its trial arrives under her tombstone's label and her
    events not at all. A trial or an event pushed in the moment after the erasure, by a
    kiosk that has not pulled it yet, is stored the same way."""
    from kiosk.live.events import EventLog
    from kiosk.site.connect import SiteUnreachable, connect
    from kiosk.site.registry import Registry
    from kiosk.trials.site import SiteTrialStore

    sites = site_kiosks(postgres, site_db, officer="operator", door="door")
    officer = kiosk(tmp_path, "officer", sites["officer"])
    events_dir = tmp_path / "door" / "events"
    door = kiosk(tmp_path, "door", sites["door"], events_dir=events_dir)
    try:
        grace = officer.store.add_person(GRACE, photos(2, seed=1), consent())
        alan = officer.store.add_person(ALAN, photos(2, seed=2), consent())
        officer.sync_once()
        door.sync_once()
    finally:
        close(door)
    nowhere = sites["door"].model_copy(update={"host": str(tmp_path / "no-server")})
    offline = kiosk(tmp_path, "door", nowhere, events_dir=events_dir)
    thumb = np.zeros((8, 8, 3), dtype=np.uint8)
    EventLog(events_dir).append(grace.uid, GRACE, 0.93, 1, thumb)
    EventLog(events_dir).append(alan.uid, ALAN, 0.91, 2, thumb)
    with SiteTrialStore(tmp_path / "door.sqlite", offline.state, sites["door"].user) as store:
        session = store.create_session(
            label=f"door: {GRACE}", duration=1.0, threshold=0.5, min_share=0.5
        )
        session.add_participant(GRACE, enrolled=True)
        session.add_participant(ALAN, enrolled=True)
        run_trial(session, GRACE, [GRACE, GRACE], 100.0, "/clips/Grace-Hopper.mp4")
        run_trial(session, ALAN, [GRACE, ALAN, ALAN], 101.0)
        with pytest.raises(SiteUnreachable):
            offline.sync_once()
    close(offline)
    site_state = tmp_path / "door" / "site.db"
    assert GRACE.encode() in site_state.read_bytes()  # queued, with her name
    officer.store.delete(GRACE)
    officer.sync_once()
    door = kiosk(tmp_path, "door", sites["door"], events_dir=events_dir)
    try:
        report = door.sync_once()
        assert (report.erased, report.pushed, report.events) == (1, 2, 2)
        rows = registry_rows(postgres, site_db)
        assert holding(rows, "Grace", "Hopper") == {}
        assert holding(rows, grace.uid).keys() == {"tombstones"}
        assert len(rows["events"]) == 1  # Alan's
        for path in site_state.parent.glob("site.db*"):
            assert GRACE.encode() not in path.read_bytes(), path
        with postgres.connect(site_db) as conn:
            [(label,)] = conn.execute("SELECT label FROM tombstones").fetchall()
            names = {r[0] for r in conn.execute("SELECT participant FROM trials")}
            assert names == {label, ALAN}
            assert (
                conn.execute(
                    "SELECT count(*) FROM trial_frames WHERE best = %s OR accepted = %s",
                    (label, label),
                ).fetchone()[0]
                == 3
            )
        # The moment after an erasure: a kiosk that still knows her pushes her id.
        trial = {
            "key": "00000000-0000-0000-0000-0000000000cc",
            "session": {
                "key": "00000000-0000-0000-0000-0000000000cd",
                "label": f"late: {GRACE}",
                "created_at": 1.0,
                "duration": 1.0,
                "threshold": 0.5,
                "min_share": 0.5,
                "recognizer": "",
            },
            "participant": GRACE,
            "enrolled": 1,
            "started_at": 104.0,
            "duration": 1.0,
            "answer": GRACE,
            "outcome": "TP",
            "misidentified": False,
            "source": "/clips/grace_hopper.mp4",
            "frames": [[0.1, True, GRACE, 0.9, 0.5, GRACE, None]],
        }
        late_event = {
            "key": "00000000-0000-0000-0000-0000000000ce",
            "person_uid": grace.uid,
            "confidence": 0.9,
            "time": datetime.now(UTC).isoformat(),
            "track_id": 9,
        }
        with connect(sites["door"]) as conn:
            assert Registry(conn).add_trial(trial, {GRACE: grace.uid})
            assert Registry(conn).add_events([late_event]) == 0
        rows = registry_rows(postgres, site_db)
        assert holding(rows, "Grace", "Hopper") == {}
        assert holding(rows, grace.uid).keys() == {"tombstones"}
        assert sum(label in row for row in rows["trials"]) == 2
    finally:
        close(officer, door)


def test_a_replicas_retention_purge_is_queued_for_the_registry(
    postgres: PgCluster, site_db: str, tmp_path: Path
) -> None:
    """A door whose retention is shorter than the site's purges Grace when its replica
    opens: her name leaves the trial it queued, and her erasure, which a door's role may
    not make, is refused once; she stays gone from the door, even when the registry
    changes her. An operator's `kiosk people purge` erases her from the whole site."""
    from kiosk.site.connect import connect
    from kiosk.site.registry import Registry
    from kiosk.trials.site import SiteTrialStore

    sites = site_kiosks(postgres, site_db, officer="operator", door="door")
    officer = kiosk(tmp_path, "officer", sites["officer"])
    door = kiosk(tmp_path, "door", sites["door"])
    try:
        grace = officer.store.add_person(GRACE, photos(2, seed=1), consent(days_ago=40))
        officer.store.add_person(ALAN, photos(2, seed=2), consent(days_ago=1))
        officer.sync_once()
        assert door.sync_once().added == 2
    finally:
        close(door)
    with SiteTrialStore(
        tmp_path / "door.sqlite", SiteState(tmp_path / "door"), sites["door"].user
    ) as trials:
        session = trials.create_session(label="door", duration=1.0, threshold=0.5, min_share=0.5)
        session.add_participant(GRACE, enrolled=True)
        run_trial(session, GRACE, [GRACE, GRACE], 100.0)
    root = tmp_path / "door"
    store = ReplicaStore(root, SiteState(root), retention_days=30)  # purged on opening
    door = SiteSync(sites["door"], store)
    try:
        assert store.purged_on_open == [grace.uid] and store.by_uid(grace.uid) is None
        assert [e.uid for e in store.pending_erasures()] == [grace.uid]  # for the kiosk's files
        for path in root.glob("site.db*"):
            assert GRACE.encode() not in path.read_bytes(), path
        report = door.sync_once()
        assert (report.rejected, report.pushed, report.added) == (1, 1, 0)
        [(kind, uid, reason)] = door.state.rejected()
        assert (kind, uid) == ("delete", grace.uid) and "may not" in reason
        with postgres.connect(site_db) as conn:
            [(participant,)] = conn.execute("SELECT participant FROM trials").fetchall()
            assert participant.startswith("erased person ")
            assert conn.execute("SELECT count(*) FROM people").fetchone()[0] == 2
        # The site changes her: the door neither pulls her back nor asks again.
        officer.store.rename(GRACE, "Grace B. Hopper")
        officer.sync_once()
        report = door.sync_once()
        assert (report.rejected, report.pushed, report.added, report.renamed) == (0, 0, 0, 0)
        assert door.store.by_uid(grace.uid) is None and not door.gate.may_name("Grace B. Hopper")
        assert door.state.counts() == {"queued": 0, "rejected": 1}
        # `kiosk people purge` at the operator's kiosk: an erasure of the whole site.
        officer.store.retention_days = 30
        assert officer.store.purge_expired() == [grace.uid]
        assert officer.sync_once().pushed == 1
        with connect(sites["officer"]) as conn:
            assert grace.uid not in Registry(conn).people_uids()
            [(reason,)] = conn.execute(
                "SELECT reason FROM tombstones WHERE person_uid = %s", (grace.uid,)
            ).fetchall()
        assert reason == "retention period of 30 days"
        assert holding(registry_rows(postgres, site_db), "Grace", "Hopper") == {}
    finally:
        close(officer, door)


def test_a_registry_of_the_previous_schema_upgrades_in_place(
    postgres: PgCluster, site_db: str, tmp_path: Path
) -> None:
    """A registry made by the program of schema 1 (its grants, a person, a door's trials
    and event, an erasure that left its person's name in the trials) is refused until
    migrated; `kiosk site migrate` then brings it to this schema in place: the erased
    person's name leaves the old trials, the metrics stay, and an erasure reaches the
    old trial and event of a person still enrolled."""
    from kiosk.live.events import EventLog
    from kiosk.site.connect import connect
    from kiosk.site.registry import Registry
    from kiosk.site.schema import (
        GRANTS,
        MIGRATIONS,
        ROLES,
        SCHEMA_VERSION,
        add_kiosk,
        migrate,
        schema_version,
    )
    from kiosk.trials.site import site_session

    assert SCHEMA_VERSION == 3
    with postgres.connect(site_db) as conn:
        conn.autocommit = False
        conn.execute("CREATE TABLE schema_version (version integer NOT NULL)")
        assert isinstance(MIGRATIONS[0], str)
        conn.execute(MIGRATIONS[0])
        conn.execute("INSERT INTO schema_version VALUES (1)")
        for role in ROLES.values():
            if not conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone():
                conn.execute(f"CREATE ROLE {role} NOLOGIN")
        conn.execute(GRANTS[0])
        conn.commit()
        roles = {}
        for key, kind in (("officer", "operator"), ("door", "door")):
            roles[key] = f"v1_{key}_{site_db}"
            add_kiosk(conn, roles[key], kind, password=None)
        conn.commit()
    sites = {
        key: SiteConfig(
            host=str(postgres.socket_dir),
            port=postgres.port,
            dbname=site_db,
            user=role,
            poll_s=1.0,
            connect_timeout_s=2,
        )
        for key, role in roles.items()
    }
    # What the program of schema 1 wrote: Grace, a door's event and trial of hers, and
    # the erasure of Ken (a tombstone without a label), whose name it left in a trial of
    # his and in a frame of a stranger's trial.
    officer = kiosk(tmp_path, "officer", sites["officer"])
    door = kiosk(tmp_path, "door", sites["door"], events_dir=tmp_path / "door" / "events")
    try:
        grace = officer.store.add_person(GRACE, photos(2, seed=1), consent())
        with connect(sites["officer"]) as conn:
            assert Registry(conn).add_person(officer.store.record(grace))
            conn.execute(
                "INSERT INTO tombstones (person_uid, seq, reason) VALUES (%s, 0, 'old')",
                ("e" * 32,),
            )
            conn.commit()
        officer.state.done(officer.state.pending()[0].id)  # pushed by the previous program
        with connect(sites["door"]) as conn:
            conn.execute(
                "INSERT INTO events (event_key, person_uid, confidence, at, track_id)"
                " VALUES (gen_random_uuid(), %s, 0.9, now(), 1)",
                (grace.uid,),
            )
            conn.execute(
                "INSERT INTO trial_sessions (session_key, label, created_at, duration,"
                " threshold, min_share, recognizer)"
                " VALUES ('00000000-0000-0000-0000-000000000001', %s, 0, 1, 0.5, 0.5, '')",
                (f"v1 {GRACE} and ken thompson",),  # his name in free text too
            )
            conn.execute(
                "INSERT INTO trials (trial_key, session_key, participant, enrolled, started_at,"
                " duration, answer, outcome, misidentified, source) VALUES"
                " ('00000000-0000-0000-0000-000000000002', '00000000-0000-0000-0000-000000000001',"
                " %s, 1, 100, 1, %s, 'TP', false, '/clips/grace_hopper.mp4')",
                (GRACE, GRACE),
            )
            conn.execute(
                "INSERT INTO trial_frames (trial_key, idx, t, face, best, confidence, threshold,"
                " accepted) VALUES ('00000000-0000-0000-0000-000000000002', 0, 0.1, true, %s,"
                " 0.9, 0.5, %s)",
                (GRACE, GRACE),
            )
            for key, participant, enrolled, answer, outcome, accepted, source in (
                (3, "Ken Thompson", 1, "ken thompson", "TP", "Ken Thompson", "/c/KenThompson.mp4"),
                (4, "Visitor Vic", 0, None, "TN", None, "/c/vic.mp4"),  # his face was the nearest
                (5, "photo of Ken Thompson", 2, None, "TN", None, ""),  # an attack
            ):
                trial = f"00000000-0000-0000-0000-00000000000{key}"
                conn.execute(
                    "INSERT INTO trials (trial_key, session_key, participant, enrolled,"
                    " started_at, duration, answer, outcome, misidentified, source) VALUES"
                    " (%s, '00000000-0000-0000-0000-000000000001', %s, %s, 100, 1, %s, %s,"
                    " false, %s)",
                    (trial, participant, enrolled, answer, outcome, source),
                )
                conn.execute(
                    "INSERT INTO trial_frames (trial_key, idx, t, face, best, confidence,"
                    " threshold, accepted) VALUES (%s, 0, 0.1, true, 'Ken Thompson', 0.9, 0.5, %s)",
                    (trial, accepted),
                )
            conn.commit()
        with postgres.connect(site_db) as conn:
            before = site_session(Registry(conn).trials())[0].metrics()
        with pytest.raises(UserError, match="schema version 1, this program needs 3"):
            door.sync_once()
        with postgres.connect(site_db) as conn:
            conn.autocommit = False
            assert migrate(conn) == (1, 3)
            conn.commit()
            assert migrate(conn) == (3, 3)
            conn.commit()
            assert schema_version(conn) == 3
            assert conn.execute("SELECT count(*) FROM trials").fetchone()[0] == 4
            after = site_session(Registry(conn).trials())[0]
            kens = conn.execute(
                "SELECT participant, answer FROM trials WHERE enrolled = 1 AND participant <> %s",
                (GRACE,),
            ).fetchall()
            frames = {r[0] for r in conn.execute("SELECT best FROM trial_frames")}
            texts = conn.execute(
                "SELECT s.label, t.source FROM trials t JOIN trial_sessions s USING (session_key)"
                " WHERE t.trial_key = '00000000-0000-0000-0000-000000000003'"
            ).fetchone()
        rows = registry_rows(postgres, site_db)
        assert holding(rows, "Ken", "Thompson") == {}
        [(label, answer)] = kens  # one label for every spelling of his name
        assert texts == (f"v1 {GRACE} and {label}", f"/c/{label}.mp4")
        assert label.startswith("erased person ") and answer == label
        assert frames == {GRACE, label}
        assert {r.participant.name for r in after.results} == {
            GRACE,
            label,
            "Visitor Vic",
            f"photo of {label}",
        }
        assert after.metrics() == before
        assert door.sync_once().added == 1  # the old tombstone (no label) is read as well
        EventLog(door.events_dir).append(grace.uid, GRACE, 0.9, 2, np.zeros((8, 8, 3), np.uint8))  # type: ignore[arg-type]
        assert door.sync_once().events == 1
        officer.sync_once()
        officer.store.delete(GRACE)
        assert officer.sync_once().pushed == 1
        rows = registry_rows(postgres, site_db)
        assert holding(rows, "Grace", "Hopper") == {}
        assert holding(rows, grace.uid).keys() == {"tombstones"}
        assert rows["trials"] and rows["trial_frames"]  # anonymised, not removed
        assert rows["events"] == []
    finally:
        close(officer, door)


@pytest.mark.slow
def test_a_running_gallery_door_finishes_a_site_erasure(
    postgres: PgCluster, site_db: str, tmp_path: Path, model_dir: Path, shared: Any
) -> None:
    """A gallery door runs on Grace's video and logs door events of hers; the operator
    erases her at the registry. While the door keeps processing frames, its sync applies
    the erasure and the door removes her events and thumbnails and finishes the erasure
    journal, without a restart or a command."""
    from enroll.store import PeopleStore
    from kiosk.build import live_pipeline
    from kiosk.config import KioskConfig
    from kiosk.erasure import ErasureFinisher
    from kiosk.live.events import EventLog
    from kiosk.setup.site import upload
    from models.detector import FaceDetector
    from tests.helpers import enroll_from_video

    sites = site_kiosks(postgres, site_db, officer="operator", door="door")
    detector = FaceDetector.from_name("scrfd_2.5g", model_dir, input_size=320)
    video = shared("videos", "solo_02.mp4")
    enroll_from_video(tmp_path / "officer", GRACE, video, detector, photos=3)
    enroll_from_video(tmp_path / "officer", ALAN, shared("videos", "solo_03.mp4"), detector, 3)
    officer = kiosk(tmp_path, "officer", sites["officer"])
    events_dir, door_dir = tmp_path / "events", tmp_path / "door"
    config = KioskConfig.model_validate(
        {
            "site": sites["door"].model_dump(mode="json"),
            "enroll": {"store_dir": str(door_dir)},
            "events": {"dir": str(events_dir)},
            "recognizer": {"kind": "embedding_gallery", "reload_poll_s": 600},
            "liveness": {"enabled": False},
            "kiosk": {"loop": True, "realtime": True},
        }
    )
    pipeline = None
    try:
        assert upload(officer, log=lambda _: None) == 2
        grace = officer.store.find(GRACE)
        alan = officer.store.find(ALAN)
        assert grace is not None and alan is not None
        events = EventLog(events_dir)
        events.append(alan.uid, ALAN, 0.9, 1, np.zeros((8, 8, 3), dtype=np.uint8))
        pipeline = live_pipeline(
            config, source=str(video), on_erased=ErasureFinisher(config).request
        )
        pipeline.start()

        def wait_for(condition: Any, what: str, timeout: float = 60.0) -> None:
            deadline = time.monotonic() + timeout
            while not condition():
                assert time.monotonic() < deadline, f"still not {what}"
                time.sleep(0.1)

        def frames() -> int:
            latest = pipeline.latest()
            return -1 if latest is None else latest.frame_index

        wait_for(lambda: grace.uid in {e.person_uid for e in events.read()}, "named at the door")
        thumbnails = {e.thumbnail for e in events.read() if e.person_uid == grace.uid}
        officer.sync_once()
        officer.store.delete(GRACE)
        assert officer.sync_once().pushed == 1
        at_erasure = frames()
        wait_for(
            lambda: grace.uid not in {e.person_uid for e in events.read()},
            "erased from the door events",
            timeout=15.0,
        )
        assert [e.person_uid for e in events.read()] == [alan.uid]
        assert all(not (events_dir / thumbnail).exists() for thumbnail in thumbnails)
        with PeopleStore(door_dir) as store:
            wait_for(lambda: store.pending_erasures() == [], "done", timeout=15.0)
            assert store.by_uid(grace.uid) is None
        assert frames() > at_erasure  # the door kept going meanwhile
    finally:
        if pipeline is not None:
            pipeline.stop()
        close(officer)


def test_an_erasure_tells_a_reused_name_by_the_ids_pushed_with_the_trials(
    postgres: PgCluster, site_db: str, tmp_path: Path
) -> None:
    """Iris's trials were pushed; she was renamed, and someone else enrolled as "Iris".
    Erasing the new Iris leaves the first Iris's trials as they are; erasing the first Iris
    then finds hers under the name they were pushed with. (The names hold a letter that
    hex lacks: "Ada" can be found by chance in an id's hex.)"""
    from kiosk.trials.site import SiteTrialStore

    sites = site_kiosks(postgres, site_db, officer="operator", door="door")
    officer, door = (
        kiosk(tmp_path, "officer", sites["officer"]),
        kiosk(tmp_path, "door", sites["door"]),
    )

    def trial(name: str, at: float) -> None:
        door.sync_once()
        with SiteTrialStore(
            tmp_path / "door.sqlite", SiteState(tmp_path / "door"), door.config.user
        ) as store:
            session = store.create_session(label="door", duration=1.0, threshold=0.5, min_share=0.5)
            session.add_participant(name, enrolled=True)
            run_trial(session, name, [name, name], at)
        assert door.sync_once().pushed == 1

    def participants() -> list[str]:
        with postgres.connect(site_db) as conn:
            rows = conn.execute("SELECT participant FROM trials ORDER BY started_at")
            return [str(row[0]) for row in rows]

    try:
        first = officer.store.add_person("Iris", photos(2, seed=1), consent())
        officer.sync_once()
        trial("Iris", 100.0)
        officer.store.rename("Iris", "Iris Murdoch")
        officer.sync_once()
        officer.store.add_person("Iris", photos(2, seed=2), consent())
        officer.sync_once()
        trial("Iris", 101.0)
        officer.store.delete("Iris")
        officer.sync_once()
        kept, erased = participants()
        assert kept == "Iris" and erased.startswith("erased person ")
        officer.store.delete("Iris Murdoch")
        officer.sync_once()
        assert [name.startswith("erased person ") for name in participants()] == [True, True]
        assert holding(registry_rows(postgres, site_db), "Iris", first.uid).keys() == {"tombstones"}
    finally:
        close(officer, door)
