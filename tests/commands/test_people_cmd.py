"""`kiosk people ...` end to end on a real store."""

from __future__ import annotations

import json
import shutil
import threading
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest

from enroll.store import EXPORT_MARKER, PeopleStore
from enroll.training import TrainingCancelled, rebuild_gallery
from kiosk.cli import main
from tests.helpers import consent, photos, tree


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_an_erasure_that_cannot_finish_stays_pending_and_the_next_command_finishes_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store_dir = tmp_path / "store"
    with PeopleStore(store_dir) as store:
        ada = store.add_person("Ada Lovelace", photos(2), consent())
        store.add_person("Bob", photos(2, seed=1), consent())
    base = ["people", "--store", str(store_dir)]
    drive = tmp_path / "media" / "usb"  # a drive's mount point: gone when it is unplugged
    by_hand = tmp_path / "scratch" / "export"  # an export its operator deleted
    for target in (drive / "export", by_hand):
        assert run(capsys, *base, "export", str(target))[0] == 0
    shutil.rmtree(by_hand)
    drive.rename(tmp_path / "media" / "unplugged")
    code, out, err = run(capsys, *base, "delete", "Ada Lovelace", "--yes")
    assert code == 0 and "deleted 'Ada Lovelace'" in out
    assert f"person {ada.uid} is not erased from the exports" in err and "not reachable" in err
    with PeopleStore(store_dir) as store:
        assert [e.uid for e in store.pending_erasures()] == [ada.uid]
    (tmp_path / "media" / "unplugged").rename(drive)
    code, out, err = run(capsys, *base, "list")
    assert code == 0 and f"erased person {ada.uid}: removed" in err and "1 export folders" in err
    assert sorted(p.name for p in (drive / "export").iterdir()) == ["Bob", EXPORT_MARKER]
    with PeopleStore(store_dir) as store:
        assert store.pending_erasures() == []
    assert "erased person" not in run(capsys, *base, "list")[2]  # done once, for good


def test_people_commands(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store_dir = tmp_path / "store"
    with PeopleStore(store_dir) as store:
        store.add_person("Ada", photos(2), consent(), external_id="A1")
        store.add_person("Bob", photos(3, seed=1), consent())
    base = ["people", "--store", str(store_dir)]
    code, out, _ = run(capsys, *base, "list", "--json")
    listed = json.loads(out)["people"]
    assert code == 0 and [(p["name"], p["photos"]) for p in listed] == [("Ada", 2), ("Bob", 3)]
    assert run(capsys, *base, "rename", "Bob", "Bérénice")[0] == 0
    code, _, err = run(capsys, *base, "rename", "Ada", "a/b")
    assert code == 2 and "path separator" in err
    code, _, err = run(capsys, *base, "delete", "Ada")  # no terminal to ask: refused
    assert code == 2 and "--yes" in err
    code, _, err = run(capsys, *base, "delete", "Nobody", "--yes")
    assert code == 2 and "no enrolled person" in err
    assert run(capsys, *base, "export", str(tmp_path / "out"))[0] == 0
    assert sorted(p.name for p in (tmp_path / "out").iterdir() if p.is_dir()) == ["Ada", "Bérénice"]
    shutil.copytree(tmp_path / "out", tmp_path / "copy")  # a copy the kiosk knows nothing of
    code, _, err = run(capsys, *base, "delete", "Ada", "--yes")
    assert code == 0 and "1 export folders" in err
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["Bérénice", EXPORT_MARKER]
    code, out, _ = run(capsys, *base, "list")  # one person: singular, not "1 people"
    assert "(1 person)" in out and " 3 photos  enrolled" in out and "people)" not in out
    assert run(capsys, *base, "purge", "Bérénice", "--yes")[0] == 0
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [EXPORT_MARKER]
    code, out, _ = run(capsys, *base, "list")
    assert "(0 people)" in out
    assert tree(store_dir / "photos") == []
    code, out, _ = run(capsys, *base, "audit", "--json")
    assert [e["action"] for e in json.loads(out)] == ["delete", "purge"]
    assert "Ada" not in out and "Bérénice" not in out  # the audit keeps no names
    code, _, err = run(capsys, *base, "import", str(tmp_path / "copy"))
    assert code == 2 and "--consent-obtained" in err
    code, out, _ = run(capsys, *base, "import", str(tmp_path / "copy"), "--consent-obtained")
    assert code == 0 and "2 people imported" in out
    code, out, _ = run(capsys, *base, "list", "--json")
    assert [p["photos"] for p in json.loads(out)["people"]] == [2, 3]


def test_encrypted_store_from_the_command_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    code, key, _ = run(capsys, "people", "new-key")
    config = tmp_path / "config.toml"
    config.write_text(f'[enroll]\nencrypt = true\nstore_dir = "{tmp_path / "s"}"\n')
    base = ["--config", str(config), "people"]
    code, _, err = run(capsys, *base, "list")
    assert code == 2 and "KIOSK_STORE_KEY" in err
    monkeypatch.setenv("KIOSK_STORE_KEY", key.strip())
    assert run(capsys, *base, "list")[0] == 0
    monkeypatch.setenv("KIOSK_STORE_KEY", run(capsys, "people", "new-key")[1].strip())
    code, _, err = run(capsys, *base, "list")
    assert code == 2 and "not the key" in err


def test_gallery_rebuilt_from_the_store_recognizes_and_can_be_cancelled(
    tmp_path: Path, shared: Callable[..., Path], model_dir: Path
) -> None:
    from kiosk.build import photo_aligner
    from kiosk.config import KioskConfig
    from models.embedder import ArcFaceEmbedder
    from models.registry import model_path

    source = shared("faces", "faces94")
    people = sorted(p.name for p in source.iterdir() if not p.name.startswith("_"))[:3]
    folder = tmp_path / "in"
    held_out = {}
    for name in people:
        images = sorted((source / name).iterdir())
        (folder / name).mkdir(parents=True)
        for image in images[:4]:
            shutil.copy(image, folder / name / image.name)
        held_out[name] = images[-1]
    align = photo_aligner(KioskConfig())
    embedder = ArcFaceEmbedder(model_path("mobilefacenet_128d", model_dir))
    with PeopleStore(tmp_path / "store") as store:
        store.import_folder(folder, consent(), align=align)
        cancel = threading.Event()
        cancel.set()
        with pytest.raises(TrainingCancelled):
            rebuild_gallery(store, embedder, cancel=cancel)
        steps: list[tuple[int, int]] = []
        gallery = rebuild_gallery(store, embedder, progress=lambda d, n: steps.append((d, n)))
        assert steps == [(1, 3), (2, 3), (3, 3)]
        assert sorted(gallery.people) == sorted(people)
        from models.align import resize_crop

        for name, path in held_out.items():
            crop = align(np.asarray(cv2.imread(str(path)), dtype=np.uint8))
            assert crop is not None
            [prediction] = gallery.predict([resize_crop(crop)])
            assert prediction.name == name
