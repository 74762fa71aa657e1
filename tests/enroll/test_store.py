"""The people store: atomic saves, crash recovery, deletion, retention, encryption, exchange."""

from __future__ import annotations

import errno
import hashlib
import os
import re
import shutil
import subprocess
import sys
import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from enroll import store as store_module
from enroll.keys import new_key
from enroll.store import PeopleStore
from models.errors import UserError
from models.io import NESTED_FOLDER, NOT_A_FILE, NOT_AN_IMAGE, Skipped
from models.names import validate_name
from tests.helpers import BOMB_REASON, ROOT, consent, photos, png_header_only, tree


def test_add_list_read_back(tmp_path: Path) -> None:
    with PeopleStore(tmp_path) as store:
        added = photos(3, original=True)
        person = store.add_person("Zoë Ñandú", added, consent(), external_id="E-7")
        assert person.name == "Zoë Ñandú" and person.photo_count == 3
        assert person.external_id == "E-7" and person.consent.version == "test-1"
        crops = store.crops("zoë ñandú")  # names match case-insensitively
        assert all(np.array_equal(a.crop, b) for a, b in zip(added, crops, strict=True))
        assert len(store.photos("Zoë Ñandú", kind="original")) == 3
    with PeopleStore(tmp_path) as store:  # survives reopening
        assert [p.name for p in store.people()] == ["Zoë Ñandú"]


@pytest.mark.parametrize("bad", ["", "   ", "a/b", "..", "x\x00y", "a\\b", "bad\nname"])
def test_unsafe_or_empty_names_are_refused(tmp_path: Path, bad: str) -> None:
    with PeopleStore(tmp_path) as store, pytest.raises(UserError):
        store.add_person(bad, photos(1), consent())
    assert not list((tmp_path / "photos").iterdir())


def test_names_keep_unicode_and_refuse_duplicates(tmp_path: Path) -> None:
    assert validate_name("  李小龙 ") == "李小龙"
    with PeopleStore(tmp_path) as store:
        store.add_person("Ada", photos(1), consent())
        with pytest.raises(UserError, match="already enrolled"):
            store.add_person("ADA", photos(1), consent())
        store.add_person("Bob", photos(1), consent())
        with pytest.raises(UserError, match="already enrolled"):
            store.rename("Bob", "ada")
        assert store.rename("Bob", "Róbert").name == "Róbert"
        assert [p.name for p in store.people()] == ["Ada", "Róbert"]


def test_delete_leaves_no_residue(tmp_path: Path) -> None:
    with PeopleStore(tmp_path) as store:
        store.add_person("Ada", photos(2), consent())
        before = tree(tmp_path)
        store.add_person("Bob", photos(4, original=True), consent())
        embed_calls: list[int] = []

        def embed(crops: list[np.ndarray]) -> np.ndarray:
            embed_calls.append(len(crops))
            return np.ones((len(crops), 8), dtype=np.float32)

        vectors, labels = store.embeddings("test-model", embed)
        assert vectors.shape == (6, 8) and labels.count("Bob") == 4
        store.embeddings("test-model", embed)  # now cached: no new calls
        assert sum(embed_calls) == 6 and len(embed_calls) == 1  # one batch, once
        uid = store.delete("Bob")
        assert tree(tmp_path) == before  # not a file of Bob's left
        assert [p.name for p in store.people()] == ["Ada"]
        assert store._db.execute("SELECT COUNT(*) FROM embeddings").fetchone()[0] == 2
        assert store._db.execute("SELECT COUNT(*) FROM photos").fetchone()[0] == 2
        [entry] = store.audit()
        assert entry.subject == uid and entry.action == "delete"
    raw = b"".join(p.read_bytes() for p in tmp_path.rglob("*") if p.is_file())
    assert b"Bob" not in raw  # not in the database, nor its write-ahead log


def test_disk_full_is_a_clear_error_and_loses_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with PeopleStore(tmp_path) as store:
        store.add_person("Ada", photos(2), consent())
        before = tree(tmp_path)
        real_write = store_module._write_file
        calls = []

        def full_disk(path: Path, data: bytes) -> None:
            calls.append(path)
            if len(calls) == 3:
                raise OSError(errno.ENOSPC, "No space left on device")
            real_write(path, data)

        monkeypatch.setattr(store_module, "_write_file", full_disk)
        with pytest.raises(UserError, match="disk is full"):
            store.add_person("Bob", photos(5), consent())
        assert tree(tmp_path) == before
        assert [p.name for p in store.people()] == ["Ada"]
        assert len(store.crops("Ada")) == 2


# A child process that stops (until killed) just after the N-th photo file is written
# ("write:N") or just after a folder is renamed into photos/ ("rename"), then runs the
# operation appended to it with ``store`` and ``consent``.
_HANG_IN_STORE = textwrap.dedent(
    """
    import os, sys, time
    from datetime import UTC, datetime
    import numpy as np
    from enroll import store as s

    hang_at, count = sys.argv[2], 0
    real_write, real_rename = s._write_file, os.rename

    def hang(point):
        if point == hang_at:
            print("READY", flush=True)
            time.sleep(60)

    def slow_write(path, data):
        global count
        real_write(path, data)
        count += 1
        hang(f"write:{count}")

    def rename_then_hang(src, dst):
        real_rename(src, dst)
        hang("rename")

    s._write_file = slow_write
    s.os.rename = rename_then_hang
    consent = s.Consent("v", datetime.now(UTC))
    with s.PeopleStore(s.Path(sys.argv[1])) as store:
    """
)
_KILLED_SAVE = _HANG_IN_STORE + (
    "    crops = [s.NewPhoto(np.full((224, 224, 3), i, np.uint8)) for i in range(6)]\n"
    '    store.add_person("Killed", crops, consent)\n'
)
_KILLED_IMPORT = _HANG_IN_STORE + "    store.import_folder(s.Path(sys.argv[3]), consent)\n"


@pytest.mark.parametrize("stage", ["write:3", "rename"])
def test_store_is_consistent_after_a_kill_mid_save(tmp_path: Path, stage: str) -> None:
    with PeopleStore(tmp_path) as store:
        store.add_person("Ada", photos(2), consent())
    before = tree(tmp_path)
    child = subprocess.Popen(
        [sys.executable, "-c", _KILLED_SAVE, str(tmp_path), stage],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    assert child.stdout.readline().strip() == "READY"
    child.kill()
    child.wait()
    assert tree(tmp_path) != before  # the kill left something half-written behind
    with PeopleStore(tmp_path) as store:
        assert [p.name for p in store.people()] == ["Ada"]
        assert len(store.crops("Ada")) == 2
        assert sorted(p.name for p in (tmp_path / "photos").iterdir()) == [store.get("Ada").uid]
        assert not list((tmp_path / "staging").iterdir())
        store.add_person("Killed", photos(1), consent())  # the name is free again


def test_retention_purges_on_open_and_on_demand_with_an_audit(tmp_path: Path) -> None:
    with PeopleStore(tmp_path) as store:
        store.add_person("Old", photos(2), consent(days_ago=40))
        store.add_person("New", photos(2), consent(days_ago=1))
        old_uid = store.get("Old").uid
    with PeopleStore(tmp_path, retention_days=30) as store:  # purged on open
        assert [p.name for p in store.people()] == ["New"]
        assert not (tmp_path / "photos" / old_uid).exists()
        later = datetime.now(UTC) + timedelta(days=30)
        [new_uid] = store.purge_expired(now=later)
        assert store.people() == []
        entries = store.audit()
        assert [(e.action, e.subject) for e in entries] == [
            ("purge", old_uid),
            ("purge", new_uid),
        ]
        assert all("30 days" in e.reason for e in entries)
    assert list((tmp_path / "photos").iterdir()) == []


def test_encryption_round_trip_and_wrong_or_missing_key(tmp_path: Path) -> None:
    key = new_key().encode()
    added = photos(2)
    with PeopleStore(tmp_path, key=key, encrypt=True) as store:
        store.add_person("Ada", added, consent())
        store.embeddings("m", lambda crops: np.full((len(crops), 4), 0.5, np.float32))
    for file in (tmp_path / "photos").rglob("*.png"):
        assert not file.read_bytes().startswith(b"\x89PNG")  # not a readable PNG on disk
    with PeopleStore(tmp_path, key=key) as store:
        assert store.encrypted
        assert all(
            np.array_equal(a.crop, b) for a, b in zip(added, store.crops("Ada"), strict=True)
        )
        vectors, _ = store.embeddings("m", lambda crops: pytest.fail("must come from the cache"))
        assert np.allclose(vectors, 0.5)
    with pytest.raises(UserError, match="not the key"):
        PeopleStore(tmp_path, key=new_key().encode())
    with pytest.raises(UserError, match="is encrypted"):
        PeopleStore(tmp_path)
    with pytest.raises(UserError, match="not a valid Fernet key"):
        PeopleStore(tmp_path, key=b"short")


def test_export_import_round_trip(tmp_path: Path) -> None:
    with PeopleStore(tmp_path / "a") as store:
        store.add_person("Ada", photos(2, seed=1), consent())
        store.add_person("Łukasz", photos(3, seed=2), consent())
        assert store.export(tmp_path / "out") == 5
        originals = store.crops_by_person()
    assert sorted(p.name for p in (tmp_path / "out").iterdir() if p.is_dir()) == ["Ada", "Łukasz"]
    with PeopleStore(tmp_path / "b") as store:
        assert store.import_folder(tmp_path / "out", consent()) == {"Ada": 2, "Łukasz": 3}
        back = store.crops_by_person()
        with pytest.raises(UserError, match="already enrolled"):
            store.import_folder(tmp_path / "out", consent())
    assert back.keys() == originals.keys()
    for name, crops in originals.items():
        assert all(np.array_equal(a, b) for a, b in zip(crops, back[name], strict=True))


def files(root: Path) -> list[str]:
    """The store's tree, less SQLite's -wal and -shm files (there while it is open)."""
    return [p for p in tree(root) if not p.startswith(f"{store_module.DB_NAME}-")]


def _exported(tmp_path: Path) -> Path:
    """An export of Ada (2 crops) and Łukasz (3 crops)."""
    with PeopleStore(tmp_path / "a") as store:
        store.add_person("Ada", photos(2, seed=1), consent())
        store.add_person("Łukasz", photos(3, seed=2), consent())
        store.export(tmp_path / "out")
    return tmp_path / "out"


def test_import_skips_bombs_and_bad_files_with_reasons_and_carries_on(tmp_path: Path) -> None:
    """An image bomb, a corrupt file, a note, a folder named like a photo, a link out of
    the folder, a device: each photo is left out with its reason and the rest imported
    (the bomb used to end the import in a cv2.error traceback after 5.4 GB)."""
    out = _exported(tmp_path)
    (out / "Ada" / "bomb.png").write_bytes(png_header_only(30_000, 30_000))
    (out / "Ada" / "cut.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    (out / "Ada" / "empty.png").write_bytes(b"")
    (out / "Ada" / "notes.txt").write_text("a note", encoding="utf-8")
    (out / "Ada" / "dir.png").mkdir()
    secret = tmp_path / "secret.png"
    secret.write_bytes((out / "Ada" / "000.png").read_bytes())
    (out / "Łukasz" / "outside.png").symlink_to(secret)
    (out / "Łukasz" / "zero.png").symlink_to("/dev/zero")
    for folder in ("Only bombs", "_unknown", ".Trashes"):
        (out / folder).mkdir()
        (out / folder / "0.png").write_bytes(png_header_only(30_000, 30_000))
    skipped: list[Skipped] = []
    with PeopleStore(tmp_path / "b") as store:
        imported = store.import_folder(out, consent(), skipped=skipped)
        assert imported == {"Ada": 2, "Łukasz": 3}
        assert [p.name for p in store.people()] == ["Ada", "Łukasz"]
        assert store.check() == []
    reasons = {Path(item.path).name: item.reason for item in skipped}
    assert set(reasons) == {
        "bomb.png",
        "cut.png",
        "empty.png",
        "notes.txt",
        "dir.png",
        "outside.png",
        "zero.png",
        "0.png",
        "Only bombs",
    }
    assert re.search(BOMB_REASON, reasons["bomb.png"])
    assert re.search(BOMB_REASON, reasons["0.png"])  # Only bombs' photo
    assert "corrupt" in reasons["cut.png"] and "empty" in reasons["empty.png"]
    assert reasons["notes.txt"] == NOT_AN_IMAGE and reasons["dir.png"] == NESTED_FOLDER
    assert "outside" in reasons["outside.png"] and reasons["zero.png"] == NOT_A_FILE
    assert reasons["Only bombs"].startswith("no usable photo: not imported")


@pytest.mark.parametrize(
    ("folders", "expected"),
    [
        (["Bill Gates", "bill gates"], "same person as 'Bill Gates'"),
        (["Zo\u00eb", "Zoe\u0308"], "same person as 'Zoë'"),  # NFC and NFD
        (["bad\x01name"], "control"),
        (["a\u202eb"], "control"),
        (["\U0001f600" * 31], "124 bytes"),
        (["Ada"], "already enrolled"),
    ],
)
def test_an_import_with_a_bad_person_folder_imports_nobody(
    tmp_path: Path, folders: list[str], expected: str
) -> None:
    """Every problem with a person folder is found before anything is written, and the
    import refuses whole: no partial import, and the fixed folder imports in one go."""
    out = _exported(tmp_path)
    with PeopleStore(tmp_path / "b") as store:
        if "Ada" in folders:
            store.add_person("Ada", photos(1), consent())
        before = tree(tmp_path / "b")
        for folder in set(folders) - {"Ada"}:
            (out / folder).mkdir()
            (out / folder / "0.png").write_bytes((out / "Ada" / "000.png").read_bytes())
        with pytest.raises(UserError, match="nothing was imported") as refused:
            store.import_folder(out, consent())
        assert expected in str(refused.value)
        assert tree(tmp_path / "b") == before
        for folder in folders:
            if folder != "Ada":
                shutil.rmtree(out / folder)
        if "Ada" in folders:
            store.delete("Ada")
        assert store.import_folder(out, consent()) == {"Ada": 2, "Łukasz": 3}


def test_an_import_that_fails_midway_imports_nobody(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = _exported(tmp_path)
    for name in ("Cleo", "Dan", "Eve"):
        shutil.copytree(out / "Ada", out / name)
    with PeopleStore(tmp_path / "b") as store:
        store.add_person("Zed", photos(1), consent())
        before = tree(tmp_path / "b")
        real_write = store_module._write_file
        calls = []

        def full_disk(path: Path, data: bytes) -> None:
            calls.append(path)
            if len(calls) == 9:  # while staging the fourth person
                raise OSError(errno.ENOSPC, "No space left on device")
            real_write(path, data)

        monkeypatch.setattr(store_module, "_write_file", full_disk)
        with pytest.raises(UserError, match="disk is full"):
            store.import_folder(out, consent())
        assert tree(tmp_path / "b") == before
        assert [p.name for p in store.people()] == ["Zed"]
        monkeypatch.setattr(store_module, "_write_file", real_write)

        def broken_rename(src: str, dst: str) -> None:
            if len(list((tmp_path / "b" / "photos").iterdir())) == 3:
                raise OSError(errno.EIO, "Input/output error")
            real_rename(src, dst)

        real_rename = os.rename
        monkeypatch.setattr(store_module.os, "rename", broken_rename)
        with pytest.raises(UserError, match="importing 5 people failed"):
            store.import_folder(out, consent())
        monkeypatch.setattr(store_module.os, "rename", real_rename)
        assert tree(tmp_path / "b") == before
        assert store.import_folder(out, consent()) == {
            n: 2 if n != "Łukasz" else 3 for n in ("Ada", "Cleo", "Dan", "Eve", "Łukasz")
        }
        assert store.check() == []


@pytest.mark.parametrize("stage", ["write:5", "rename"])
def test_a_killed_import_leaves_nobody_and_a_rerun_imports_everyone(
    tmp_path: Path, stage: str
) -> None:
    out = _exported(tmp_path)
    shutil.copytree(out / "Ada", out / "Cleo")
    with PeopleStore(tmp_path / "b") as store:
        store.add_person("Zed", photos(1), consent())
    before = files(tmp_path / "b")
    child = subprocess.Popen(
        [sys.executable, "-c", _KILLED_IMPORT, str(tmp_path / "b"), stage, str(out)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    assert child.stdout.readline().strip() == "READY"
    if stage == "write:5":  # a second process's open spares the import in progress
        with PeopleStore(tmp_path / "b") as other:
            assert [p.name for p in other.people()] == ["Zed"]
    assert files(tmp_path / "b") != before
    child.kill()
    child.wait()
    with PeopleStore(tmp_path / "b") as store:
        assert [p.name for p in store.people()] == ["Zed"]
        assert files(tmp_path / "b") == before and store.check() == []
        assert store.import_folder(out, consent()) == {"Ada": 2, "Cleo": 2, "Łukasz": 3}


def test_import_of_raw_photos_detects_and_aligns(tmp_path: Path, shared, detector) -> None:  # type: ignore[no-untyped-def]
    from models.align import align_for_clip

    def align(image: np.ndarray) -> np.ndarray | None:
        faces = detector.detect(image, mode="largest")
        return align_for_clip(image, faces[0].kps) if faces else None

    source = shared("faces", "faces94")
    folder = tmp_path / "in"
    for name in sorted(p.name for p in source.iterdir() if not p.name.startswith("_"))[:2]:
        (folder / name).mkdir(parents=True)
        for image in sorted((source / name).iterdir())[:2]:
            shutil.copy(image, folder / name / image.name)
    (folder / "empty").mkdir()
    with PeopleStore(tmp_path / "store") as store:
        imported = store.import_folder(folder, consent(), align=align)
        assert len(imported) == 2 and all(n == 2 for n in imported.values())
        assert all(c.shape == (224, 224, 3) for c in store.crops(next(iter(imported))))


def test_recovery_removes_only_what_the_store_wrote(tmp_path: Path) -> None:
    with PeopleStore(tmp_path) as store:
        store.add_person("Ada", photos(1), consent())
    stray = tmp_path / "photos" / "0123456789abcdef0123456789abcdef"
    stray.mkdir()
    (tmp_path / "photos" / "notes.txt").write_text("the operator's", encoding="utf-8")
    with PeopleStore(tmp_path) as store:
        assert store.recover() == []  # the stray folder went when the store opened
        assert [p.name for p in store.people()] == ["Ada"]
    assert not stray.exists() and (tmp_path / "photos" / "notes.txt").exists()


def test_each_person_has_a_key_of_their_own_and_an_erasure_needs_no_key(tmp_path: Path) -> None:
    """Crypto-shredding: a person's files are sealed with their own data key, kept only
    wrapped in their row; deleting the row (which needs no key) leaves any copy of their
    files unreadable, even with the operator's key."""
    from cryptography.fernet import Fernet, InvalidToken

    from models.names import name_digest

    key = new_key().encode()
    with PeopleStore(tmp_path / "s", key=key, encrypt=True) as store:
        ada = store.add_person("Ada Lovelace", photos(2), consent())
        bob = store.add_person("Bob", photos(2, seed=1), consent())
        store.embeddings("m", lambda crops: np.full((len(crops), 4), 0.5, np.float32))
        [ada_file, *_] = store.photos("Ada Lovelace")
        pngs = [store.read_png(record) for record in store.photos("Ada Lovelace")]
    backup = tmp_path / "backup.png"
    backup.write_bytes(ada_file.file.read_bytes())  # a copy the store knows nothing of
    with pytest.raises(InvalidToken):
        Fernet(key).decrypt(backup.read_bytes())  # not sealed with the operator's key
    with PeopleStore(tmp_path / "s", keyless=True) as locked:
        assert locked.encrypted and [p.name for p in locked.people()] == ["Ada Lovelace", "Bob"]
        with pytest.raises(UserError, match="is encrypted"):
            locked.crops("Ada Lovelace")
        with pytest.raises(UserError, match="is encrypted"):
            locked.add_person("Cy", photos(1), consent())
        assert locked.delete("Ada Lovelace") == ada.uid  # no key needed to erase
        [erasure] = locked.pending_erasures()
    assert erasure.uid == ada.uid and erasure.name_digest == name_digest("ada lovelace")
    assert erasure.photo_digests == tuple(hashlib.sha256(png).hexdigest() for png in pngs)
    with PeopleStore(tmp_path / "s", key=key) as store:
        assert [p.name for p in store.people()] == ["Bob"]
        assert len(store.crops("Bob")) == 2
        with pytest.raises(UserError):
            store.unseal(ada.uid, backup.read_bytes())  # her key is gone with her row
        with pytest.raises(UserError, match="cannot be decrypted"):
            store.unseal(bob.uid, backup.read_bytes())  # and nobody else's opens it
        store.erasure_done(ada.uid)
        assert store.pending_erasures() == []
    raw = b"".join(p.read_bytes() for p in (tmp_path / "s").rglob("*") if p.is_file())
    # A name with a space: never found by chance in the base64 of the sealed files.
    assert b"Ada Lovelace" not in raw and ada.uid.encode() in raw  # the audit log keeps the id


def write_v1_store(root: Path, key: bytes, people: dict[str, list[np.ndarray]]) -> None:
    """An encrypted store as schema 1 wrote it: every file sealed with the operator's key."""
    import sqlite3

    from cryptography.fernet import Fernet

    fernet = Fernet(key)
    db = sqlite3.connect(root / "people.db")
    for statement in store_module.MIGRATIONS[0].split(";"):
        if statement.strip():
            db.execute(statement)
    db.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
    db.execute("INSERT INTO schema_version VALUES (1)")
    db.execute(
        "INSERT INTO meta VALUES ('key_check', ?)", (fernet.encrypt(store_module._KEY_CHECK),)
    )
    for index, (name, crops) in enumerate(people.items()):
        uid = f"{index:032x}"
        (root / "photos" / uid).mkdir(parents=True)
        db.execute(
            "INSERT INTO people VALUES (?, ?, ?, ?, NULL, '2026-01-01T00:00:00+00:00', 'v1', ?)",
            (index + 1, uid, name, name.casefold(), consent().at.isoformat()),
        )
        for number, crop in enumerate(crops):
            file = f"{number:03d}.png"
            (root / "photos" / uid / file).write_bytes(
                fernet.encrypt(store_module.encode_png(crop))
            )
            cursor = db.execute(
                "INSERT INTO photos (person_id, file, kind, pose, created_at) VALUES"
                " (?, ?, 'aligned', '', '2026-01-01')",
                (index + 1, file),
            )
            vector = np.full(4, number, np.float32).tobytes()
            db.execute(
                "INSERT INTO embeddings VALUES (?, 'm', ?)",
                (cursor.lastrowid, fernet.encrypt(vector)),
            )
    db.commit()
    db.close()


def test_a_store_encrypted_before_per_person_keys_is_resealed_when_opened_with_the_key(
    tmp_path: Path,
) -> None:
    import sqlite3

    from cryptography.fernet import Fernet, InvalidToken

    key = new_key().encode()
    crops = {name: [p.crop for p in photos(2, seed=i)] for i, name in enumerate(["Ada", "Bob"])}
    write_v1_store(tmp_path, key, crops)
    with PeopleStore(tmp_path, keyless=True) as locked:  # schema 2, but nothing to re-seal with
        assert [p.name for p in locked.people()] == ["Ada", "Bob"]
    with PeopleStore(tmp_path, key=key) as store:  # re-sealed, each with their own key
        for name, originals in crops.items():
            assert all(
                np.array_equal(a, b) for a, b in zip(originals, store.crops(name), strict=True)
            )
            for record in store.photos(name):
                with pytest.raises(InvalidToken):
                    Fernet(key).decrypt(record.file.read_bytes())
        vectors = store.cached_embeddings(store.get("Bob").uid)["m"]
        assert [np.frombuffer(v, np.float32)[0] for v in vectors] == [0.0, 1.0]
        digests = [row[0] for row in store._db.execute("SELECT digest FROM photos ORDER BY id")]
    expected = [
        hashlib.sha256(store_module.encode_png(c)).hexdigest() for v in crops.values() for c in v
    ]
    assert digests == expected
    db = sqlite3.connect(tmp_path / "people.db")
    assert db.execute("SELECT version FROM schema_version").fetchone() == (2,)
    wrapped = [row[0] for row in db.execute("SELECT data_key FROM people")]
    db.close()
    assert len(set(wrapped)) == 2 and all(wrapped)
    with PeopleStore(tmp_path, key=key) as store:  # opening again changes nothing
        assert len(store.crops("Ada")) == 2


def test_an_unencrypted_store_keeps_working_and_gets_its_photos_digests(tmp_path: Path) -> None:
    with PeopleStore(tmp_path) as store:
        store.add_person("Ada", photos(2), consent())
        store._db.execute("UPDATE photos SET digest = ''")  # as schema 1 left them
    with PeopleStore(tmp_path) as store:
        files = [r.file.read_bytes() for r in store.photos("Ada")]
        assert all(data.startswith(b"\x89PNG") for data in files)  # plain PNGs, as ever
        digests = [row[0] for row in store._db.execute("SELECT digest FROM photos ORDER BY id")]
        assert digests == [hashlib.sha256(data).hexdigest() for data in files]
        store.export(tmp_path / "out")
        store.delete("Ada")
        [erasure] = store.pending_erasures()
    assert erasure.photo_digests == tuple(digests)
    assert [root for root, _, _ in erasure.exports] == [(tmp_path / "out").resolve()]
