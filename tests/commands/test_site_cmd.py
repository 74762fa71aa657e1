"""`kiosk site ...`, and the people/trials/doctor commands on a site, end to end against
the throwaway PostgreSQL cluster."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path
from typing import Any

import pytest

from kiosk.bench.pgcluster import PgCluster
from kiosk.cli import main
from kiosk.site.schema import SCHEMA_VERSION
from tests.helpers import photos


def write_config(path: Path, cluster: PgCluster, db: str, user: str, store: Path) -> Path:
    path.write_text(
        f'[site]\nhost = "{cluster.socket_dir}"\nport = {cluster.port}\ndbname = "{db}"\n'
        f'user = "{user}"\npoll_s = 1.0\n\n[enroll]\nstore_dir = "{store}"\n',
        encoding="utf-8",
    )
    return path


def export_folder(root: Path, names: list[str]) -> Path:
    """A folder as `kiosk people export` writes it: aligned crops per person."""
    import cv2

    from enroll.store import EXPORT_MARKER

    root.mkdir()
    (root / EXPORT_MARKER).write_text("crops\n", encoding="utf-8")
    for seed, name in enumerate(names):
        (root / name).mkdir()
        for index, photo in enumerate(photos(2, seed=seed)):
            cv2.imwrite(str(root / name / f"{index}.png"), photo.crop)
    return root


def test_a_site_from_the_command_line(
    postgres: PgCluster,
    site_db: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    admin = write_config(
        tmp_path / "admin.toml", postgres, site_db, postgres.superuser, tmp_path / "a"
    )
    assert main(["--config", str(admin), "site", "migrate", "--create-roles"]) == 0
    assert f"from schema version 0 to {SCHEMA_VERSION}" in capsys.readouterr().out
    assert main(["--config", str(admin), "site", "migrate"]) == 0
    assert "nothing to do" in capsys.readouterr().out
    suffix = f"{os.getpid()}_{site_db[-4:]}"
    roles = {"desk": "enroll", "door": "door", "officer": "operator"}
    configs = {}
    for name, role in roles.items():
        monkeypatch.setattr("sys.stdin", io.StringIO("secret-pw\n"))
        kiosk_id = f"{name}_{suffix}"
        args = ["--config", str(admin), "site", "add-kiosk", kiosk_id, "--role", role]
        assert main([*args, "--password-stdin"]) == 0
        configs[name] = write_config(
            tmp_path / f"{name}.toml", postgres, site_db, kiosk_id, tmp_path / name
        )
    capsys.readouterr()

    def run(name: str, *args: str) -> tuple[int, str, str]:
        code = main(["--config", str(configs[name]), *args])
        out = capsys.readouterr()
        return code, out.out, out.err

    folder = export_folder(tmp_path / "export", ["Ada", "Bob"])
    code, out, _ = run("desk", "people", "import", str(folder), "--consent-obtained")
    assert code == 0 and "2 people imported" in out
    code, out, _ = run("door", "site", "sync")
    assert code == 0 and "2 added" in out
    code, out, _ = run("door", "people", "list", "--json")
    assert sorted(p["name"] for p in json.loads(out)["people"]) == ["Ada", "Bob"]
    # A door may not erase: done at this door, refused by the registry, said so.
    code, _, err = run("door", "people", "delete", "Ada", "--yes")
    assert code == 0 and "refused" in err and "may not" in err
    code, out, _ = run("officer", "people", "delete", "Bob", "--yes")
    assert code == 0
    code, out, _ = run("desk", "site", "sync")
    assert "1 erased" in out
    code, out, _ = run("officer", "site", "status", "--json")
    status = json.loads(out)
    assert status["people"] == 1
    kiosks = {row["kiosk_id"]: row for row in status["kiosks"]}
    assert set(kiosks) == {f"{n}_{suffix}" for n in roles}
    assert kiosks[f"door_{suffix}"]["rejected"] == 1
    code, out, _ = run("door", "site", "status", "--json")
    assert [row["kiosk_id"] for row in json.loads(out)["kiosks"]] == [f"door_{suffix}"]
    code, _, err = run("door", "trials", "report", "--site")
    assert code == 2 and "no trials" in err
    code, _, err = run("door", "site", "add-kiosk", "intruder", "--role", "operator")
    assert code == 2 and "may not" in err  # a door role: a message, not a traceback
    # The old row versions of the erased: rewritten away by the owner alone.
    code, _, err = run("officer", "site", "vacuum")
    assert code == 2 and "only the registry's owner" in err
    assert main(["--config", str(admin), "site", "vacuum"]) == 0
    assert "rewrote 10 tables of the site registry: people, photos" in capsys.readouterr().out


def test_doctor_shows_the_site_but_never_its_password(
    postgres: PgCluster,
    site_db: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from kiosk.config import load_config
    from kiosk.setup.doctor import DoctorReport
    from kiosk.setup.site import check_site

    config_path = write_config(
        tmp_path / "c.toml", postgres, site_db, postgres.superuser, tmp_path / "s"
    )
    monkeypatch.setenv("KIOSK_SITE_PASSWORD", "do-not-print-me")
    report = DoctorReport()
    check_site(report, load_config(config_path))
    text = json.dumps(report.as_dict(), default=str)
    assert "do-not-print-me" not in text
    site: Any = report.checks["site"]
    assert (
        site["reachable"]
        and site["schema_version"] == 0
        and site["password"] == "$KIOSK_SITE_PASSWORD"
    )
    assert any("kiosk site migrate" in p.fix for p in report.problems)
    code = main(["--config", str(config_path), "doctor", "--json"])
    out = capsys.readouterr().out
    assert "do-not-print-me" not in out and code in (0, 1)


def test_no_site_section_changes_nothing(tmp_path: Path) -> None:
    from enroll.store import PeopleStore
    from kiosk.build import site_sync
    from kiosk.config import KioskConfig
    from kiosk.site.replica import open_people

    config = KioskConfig.model_validate({"enroll": {"store_dir": str(tmp_path / "store")}})
    assert config.site is None and site_sync(config) is None
    with open_people(config) as store:
        assert type(store) is PeopleStore
    assert not (tmp_path / "store" / "site.db").exists()
