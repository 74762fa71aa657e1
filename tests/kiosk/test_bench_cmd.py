"""`kiosk bench VERB`: one command for the benchmarks; the old spellings are gone."""

from __future__ import annotations

from pathlib import Path

import pytest

from kiosk.cli import build_parser, main


def test_bench_has_the_three_verbs_and_the_old_commands_are_gone() -> None:
    parser = build_parser()
    for verb in ("core", "live", "liveness"):
        args = parser.parse_args(["bench", verb, "--json", "out.json"])
        assert args.command == "bench" and args.verb == verb and args.json == Path("out.json")
    for old in (["bench-live", "--json", "x.json"], ["liveness", "bench", "--json", "x.json"]):
        with pytest.raises(SystemExit):
            parser.parse_args(old)


def test_bench_verbs_report_missing_shared_data(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("KIOSK_SHARED", str(tmp_path / "nowhere"))
    out = str(tmp_path / "b.json")
    assert main(["bench", "core", "--json", out]) == 2
    assert f"{tmp_path / 'nowhere' / 'faces'} does not exist" in capsys.readouterr().err
    assert main(["bench", "live", "--json", out]) == 2
    assert f"{tmp_path / 'nowhere' / 'videos'} does not exist" in capsys.readouterr().err
    assert main(["bench", "liveness", "--json", out]) == 2
    assert f"{tmp_path / 'nowhere' / 'antispoof'} does not exist" in capsys.readouterr().err
    assert not (tmp_path / "b.json").exists()
