"""The site registry and its replicas, against a real PostgreSQL (the `postgres` fixture)."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from kiosk.config import SiteConfig
from kiosk.site.replica import ReplicaStore
from kiosk.site.state import SiteState
from kiosk.site.sync import SiteSync
from models.errors import UserError
from tests.helpers import PgCluster, consent, photos, site_kiosks


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
        tables = {r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
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
        # A second pull, and a retried push of the same enrollment, change nothing.
        assert door.sync_once().added == 0
        desk.state.enqueue("person:again", "person", desk.store.record(person).to_json(), person.uid)
        desk.sync_once()
        with postgres.connect(site_db) as conn:
            assert conn.execute("SELECT count(*) FROM people").fetchone()[0] == 1
            assert conn.execute("SELECT count(*) FROM photos").fetchone()[0] == 3
    finally:
        close(desk, door)
