"""The operator PIN's rules: strength, a lockout that survives a restart, and stored
hashes whose scrypt cost the machine can pay (kiosk/setup/pin.py)."""

from __future__ import annotations

import base64
import json
import stat
from pathlib import Path

import pytest

from kiosk.config import load_config
from kiosk.setup.pin import (
    LOCKOUT_FILE,
    PinGate,
    check_pin_text,
    default_lockout_file,
    hash_pin,
    memory_limit,
    parse_pin_hash,
)
from models.errors import UserError

PIN = "480259"


@pytest.mark.parametrize(
    ("pin", "why"),
    [
        ("1234", "6 to 64 characters"),
        ("111111", "one digit or a short pattern"),
        ("000000000", "one digit or a short pattern"),
        ("121212", "one digit or a short pattern"),
        ("123123", "one digit or a short pattern"),
        ("123456", "a run"),
        ("654321", "a run"),
        ("890123", "a run"),  # wraps past 9
        ("abcdef", "a run"),
        ("147258", "most common"),
        ("Password", "most common"),
    ],
)
def test_weak_pins_are_refused_with_the_reason(pin: str, why: str) -> None:
    with pytest.raises(UserError, match=why):
        check_pin_text(pin)


@pytest.mark.parametrize("pin", [PIN, "582046", "130792", "k1osk-door"])
def test_reasonable_pins_are_accepted(pin: str) -> None:
    check_pin_text(pin)


def _gate(state: Path | None, now: list[float], stored: str) -> PinGate:
    return PinGate(
        stored, free_attempts=3, first_lockout_s=5, clock=lambda: now[0], state_file=state
    )


def test_the_lockout_survives_a_restart(tmp_path: Path) -> None:
    stored, state, now = hash_pin(PIN), tmp_path / "data" / LOCKOUT_FILE, [1000.0]
    gate = _gate(state, now, stored)
    for guess in ("000001", "000002", "000003"):
        assert not gate.attempt(guess)
    assert gate.locked_for() == pytest.approx(5)
    assert stat.S_IMODE(state.stat().st_mode) == 0o600
    now[0] += 2
    restarted = _gate(state, now, stored)  # the kiosk restarted: the count and lock hold
    assert restarted.failures == 3 and restarted.locked_for() == pytest.approx(3)
    assert not restarted.attempt(PIN)  # refused unchecked while locked
    now[0] += 3
    assert not restarted.attempt("000004")  # fourth wrong: 10 s
    assert _gate(state, now, stored).locked_for() == pytest.approx(10)
    now[0] += 10
    assert restarted.attempt(PIN)
    assert json.loads(state.read_text())["failures"] == 0
    assert _gate(state, now, stored).failures == 0


def test_a_clock_set_back_cannot_lengthen_the_lock_beyond_the_cap(tmp_path: Path) -> None:
    stored, state, now = hash_pin(PIN), tmp_path / LOCKOUT_FILE, [10_000.0]
    gate = _gate(state, now, stored)
    for guess in ("000001", "000002", "000003"):
        gate.attempt(guess)
    now[0] -= 5000  # the clock jumped back
    assert _gate(state, now, stored).locked_for() <= 300


def test_a_damaged_lockout_file_locks_once_and_another_pins_count_does_not(
    tmp_path: Path,
) -> None:
    stored, state, now = hash_pin(PIN), tmp_path / LOCKOUT_FILE, [50.0]
    state.write_text("{not json", encoding="utf-8")
    gate = _gate(state, now, stored)
    assert gate.locked_for() == pytest.approx(5)  # no fresh attempts for whoever broke it
    assert json.loads(state.read_text())["failures"] == 3  # replaced by a sound file
    now[0] += 5
    assert gate.attempt(PIN)  # one lockout, not one at every load
    for guess in ("000001", "000002", "000003"):
        _gate(state, now, stored).attempt(guess)
    assert _gate(state, now, stored).failures == 3
    other = hash_pin("582046")  # the PIN was changed: the old PIN's count is not carried
    assert _gate(state, now, other).failures == 0


def test_the_default_lockout_file_is_in_the_data_folder() -> None:
    from models.paths import user_data_dir

    assert default_lockout_file() == user_data_dir() / LOCKOUT_FILE


def _hash(n: int, r: int = 8, p: int = 1) -> str:
    salt = base64.urlsafe_b64encode(b"0123456789abcdef").decode().rstrip("=")
    digest = base64.urlsafe_b64encode(bytes(32)).decode().rstrip("=")
    return f"scrypt${n}${r}${p}${salt}${digest}"


def test_a_hash_asking_more_memory_than_allowed_is_refused_at_config_load(
    tmp_path: Path,
) -> None:
    config = tmp_path / "kiosk.toml"
    config.write_text(f'[ui]\noperator_pin = "{_hash(2**20)}"\n', encoding="utf-8")
    with pytest.raises(UserError, match=r"1\.0 GiB per check.*kiosk pin"):
        load_config(config)
    assert memory_limit() <= 256 * 2**20
    parse_pin_hash(_hash(2**14))  # the default's cost is fine
    parse_pin_hash(hash_pin(PIN))


def test_a_hash_asking_too_much_work_is_refused() -> None:
    with pytest.raises(ValueError, match="times the default work"):
        parse_pin_hash(_hash(2**14, r=8, p=64))
