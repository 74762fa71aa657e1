"""The operator PIN: stored only as a salted scrypt hash, checked in constant time.

A stored hash reads ``scrypt$<n>$<r>$<p>$<salt>$<digest>`` (salt and digest in
URL-safe base64), so the cost parameters travel with it and can be raised later
without breaking old configs. `kiosk pin` makes one for the config's ``[ui] operator_pin``.

Rules, and why:

- A new PIN has at least 6 characters, is not one character repeated or a short
  pattern repeated (``121212``, ``123123``), not a run (``123456``, ``654321``,
  ``abcdef``) and not one of the PINs people pick most. With the lockout below a guesser
  gets about 300 tries a day once the delay reaches its 5-minute cap: all 10,000
  four-digit PINs fall within about a month, the million six-digit ones take years.
- The lockout survives a restart: the failures and the time the lock ends are kept in
  ``pin-lockout.json`` in the data folder (written atomically, 0600), so pulling the
  plug does not give a guesser fresh attempts.
- A stored hash is refused at config load when checking it would need more memory
  than the kiosk allows (scrypt takes 128 x r x n bytes: a hash with n = 2^20, r = 8
  asks for 1 GiB and would fail or thrash at every check) or more work than a few
  seconds; the message says which parameter and that `kiosk pin` makes a new hash.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import itertools
import json
import logging
import os
import re
import secrets
import time
import tomllib
from collections.abc import Callable
from pathlib import Path

from models.errors import UserError
from models.io import write_bytes_atomic

log = logging.getLogger(__name__)

SCHEME = "scrypt"
# 2**14 x 8 x 1 costs ~16 MiB and ~0.1 s: cheap for one operator, slow for a guesser.
_N, _R, _P = 2**14, 8, 1
_SALT_BYTES = 16
_DIGEST_BYTES = 32
MIN_PIN_LENGTH = 6
MAX_PIN_LENGTH = 64
MAX_SCRYPT_BYTES = 256 * 2**20  # memory one check may take, at most (and 1/8 of the RAM)
MAX_SCRYPT_WORK = 16 * _N * _R * _P  # n x r x p: 16 times the default's time (~2 s)
LOCKOUT_FILE = "pin-lockout.json"

# PINs of 6 or more characters that lead the lists of leaked PINs and passwords (those
# the rules already refuse, such as 123456, 111111 or 121212, are not repeated here).
COMMON_PINS = frozenset(
    """
    112233 123321 123654 131313 147258 147852 147369 159357 159753 159951 102030 100200
    112211 111222 121314 142536 246810 258456 321321 456123 456789 520520 5201314 666999
    696969 741852 753951 789123 789456 789789 852456 951753 963852 987654 998877 010203
    001122 112358 1234567 12345678 123456789 1234567890 87654321 11223344 147258369
    password qwerty qwertz azerty abc123 letmein
    """.split()  # noqa: SIM905 (a list literal would take a line per PIN)
)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def scrypt_bytes(n: int, r: int, p: int) -> int:
    """The memory one scrypt check takes (OpenSSL's count: 128 r (n + p + 2) bytes)."""
    return 128 * r * (n + p + 2)


def memory_limit() -> int:
    """The most memory a PIN check may take here: 256 MiB, or 1/8 of the RAM if less."""
    try:
        physical = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):  # not a POSIX system: the fixed cap
        return MAX_SCRYPT_BYTES
    return min(MAX_SCRYPT_BYTES, physical // 8) if physical > 0 else MAX_SCRYPT_BYTES


def _mib(size: int) -> str:
    return f"{size / 2**30:.1f} GiB" if size >= 2**30 else f"{size / 2**20:.0f} MiB"


def _digest(pin: str, salt: bytes, n: int, r: int, p: int, size: int) -> bytes:
    return hashlib.scrypt(
        pin.encode("utf-8"),
        salt=salt,
        n=n,
        r=r,
        p=p,
        dklen=size,
        maxmem=scrypt_bytes(n, r, p) + 2**20,
    )


def _periodic(pin: str, longest: int = 3) -> bool:
    """``pin`` is a block of at most ``longest`` characters repeated (111111, 121212)."""
    return any(
        len(pin) % size == 0 and pin == pin[:size] * (len(pin) // size)
        for size in range(1, longest + 1)
    )


def _run(pin: str) -> bool:
    """``pin`` steps by +1 or -1 each character (123456, 654321, abcdef, 890123 too)."""
    steps = {(ord(b) - ord(a)) for a, b in itertools.pairwise(pin)}
    if pin.isdigit():
        steps = {step % 10 for step in steps}
        return steps in ({1}, {9})
    return steps in ({1}, {-1})


def check_pin_text(pin: str) -> None:
    """Raise UserError unless ``pin`` is acceptable as a new operator PIN."""
    if not MIN_PIN_LENGTH <= len(pin) <= MAX_PIN_LENGTH:
        raise UserError(
            f"the operator PIN must have {MIN_PIN_LENGTH} to {MAX_PIN_LENGTH} characters"
        )
    if any(ch.isspace() for ch in pin):
        raise UserError("the operator PIN must not contain spaces")
    if _periodic(pin):
        raise UserError(
            "the operator PIN must not be one digit or a short pattern repeated "
            "(111111, 121212, 123123): choose one that is hard to guess"
        )
    if _run(pin.lower()):
        raise UserError(
            "the operator PIN must not be a run such as 123456 or 654321: choose one "
            "that is hard to guess"
        )
    if pin.lower() in COMMON_PINS:
        raise UserError(
            "that PIN is among the most common ones, the first a guesser tries: choose another"
        )


def hash_pin(pin: str) -> str:
    """A new salted hash of ``pin`` for the config file."""
    check_pin_text(pin)
    salt = secrets.token_bytes(_SALT_BYTES)
    digest = _digest(pin, salt, _N, _R, _P, _DIGEST_BYTES)
    return f"{SCHEME}${_N}${_R}${_P}${_b64(salt)}${_b64(digest)}"


def parse_pin_hash(stored: str) -> tuple[int, int, int, bytes, bytes]:
    """(n, r, p, salt, digest) of a stored hash; ValueError says what is wrong."""
    parts = stored.split("$")
    if len(parts) != 6 or parts[0] != SCHEME:
        raise ValueError(
            "must be a PIN hash made by `kiosk pin` (scrypt$...), never the PIN itself"
        )
    damaged = "is a damaged PIN hash; make a new one with `kiosk pin`"
    if any(len(part) > 200 for part in parts):
        raise ValueError(damaged)
    try:
        n, r, p = (int(x) for x in parts[1:4])
        salt, digest = _unb64(parts[4]), _unb64(parts[5])
    except (ValueError, binascii.Error):
        raise ValueError(damaged) from None
    if n < 2 or n & (n - 1) or r < 1 or p < 1 or not 8 <= len(salt) <= 64:
        raise ValueError(damaged)
    if not 16 <= len(digest) <= 64:
        raise ValueError(damaged)
    need, limit = 128 * r * n, memory_limit()
    if need > limit:
        raise ValueError(
            f"asks scrypt for {_mib(need)} per check (n = {n}, r = {r}: 128 x r x n "
            f"bytes), more than the {_mib(limit)} this kiosk allows; make a new hash "
            "with `kiosk pin`"
        )
    if n * r * p > MAX_SCRYPT_WORK:
        raise ValueError(
            f"asks scrypt for {n * r * p // (_N * _R * _P)} times the default work per "
            f"check (n = {n}, r = {r}, p = {p}; at most {MAX_SCRYPT_WORK // (_N * _R * _P)} "
            "times): each attempt would freeze the screen; make a new hash with `kiosk pin`"
        )
    return n, r, p, salt, digest


def verify_pin(pin: str, stored: str) -> bool:
    """Whether ``pin`` matches ``stored`` (a hash from `hash_pin`)."""
    n, r, p, salt, digest = parse_pin_hash(stored)
    return hmac.compare_digest(_digest(pin, salt, n, r, p, len(digest)), digest)


def default_lockout_file() -> Path:
    from models.paths import user_data_dir

    return user_data_dir() / LOCKOUT_FILE


_DEFAULT = Path()  # "the data folder's pin-lockout.json"


class PinGate:
    """Checks PIN attempts and slows a guesser down: after ``free_attempts`` wrong PINs in
    a row each further one locks the gate for twice as long (5 s, 10 s, ... up to 5 min).

    The count and the end of the lock are kept in ``state_file`` (default: the data
    folder's ``pin-lockout.json``; None: in memory only), so neither closing the PIN
    dialog nor restarting the kiosk resets them. ``clock`` is wall-clock seconds (a lock
    must end at the same time after a restart); a clock set back cannot lengthen a lock
    beyond ``max_lockout_s``. A state file that cannot be read counts as a lockout (and is
    replaced by a sound one): a damaged file never hands out fresh attempts.
    """

    def __init__(
        self,
        stored: str,
        *,
        free_attempts: int = 3,
        first_lockout_s: float = 5.0,
        max_lockout_s: float = 300.0,
        clock: Callable[[], float] = time.time,
        state_file: Path | None = _DEFAULT,
    ) -> None:
        parse_pin_hash(stored)
        self._stored = stored
        self._free = free_attempts
        self._first = first_lockout_s
        self._max = max_lockout_s
        self._clock = clock
        self._state = default_lockout_file() if state_file is _DEFAULT else state_file
        self._key = hashlib.sha256(stored.encode("ascii", "replace")).hexdigest()[:16]
        self.failures = 0
        self._locked_until = 0.0
        self._load()

    def _lockout(self) -> float:
        return min(self._first * 2 ** (self.failures - self._free), self._max)

    def _load(self) -> None:
        if self._state is None:
            return
        from models.io import remove_stale_temps

        remove_stale_temps(self._state.parent)  # a state write a killed run left
        try:
            data = json.loads(self._state.read_text(encoding="utf-8"))
            if data.get("pin") != self._key:
                return  # another PIN's count (the PIN was changed): starts afresh
            failures, until = int(data["failures"]), float(data["locked_until"])
        except FileNotFoundError:
            return
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
            log.warning("the PIN lockout file %s is unreadable (%s): locking", self._state, error)
            self.failures = max(self.failures, self._free)
            self._locked_until = self._clock() + self._lockout()
            self._save()  # replaced by a sound one: one lockout, not one at every load
            return
        self.failures = max(self.failures, failures)
        # A clock set back must not lock the operator out for longer than the cap.
        self._locked_until = max(self._locked_until, min(until, self._clock() + self._max))

    def _save(self) -> None:
        if self._state is None:
            return
        from models.io import private_dir, write_json_atomic

        state = {"pin": self._key, "failures": self.failures, "locked_until": self._locked_until}
        try:
            private_dir(self._state.parent)
            write_json_atomic(self._state, state)  # 0600: mkstemp's mode is kept
        except (OSError, UserError) as error:  # the count still holds in memory
            log.warning("cannot keep the PIN lockout in %s: %s", self._state, error)

    def locked_for(self) -> float:
        """Seconds until the next attempt is allowed (0 when it is allowed now)."""
        return max(0.0, self._locked_until - self._clock())

    def attempt(self, pin: str) -> bool:
        """Whether ``pin`` is right. While locked every attempt is refused unchecked."""
        self._load()  # another window or a restarted kiosk may have counted failures
        if self.locked_for() > 0:
            return False
        if verify_pin(pin, self._stored):
            if self.failures or self._locked_until:
                self.failures, self._locked_until = 0, 0.0
                self._save()
            return True
        self.failures += 1
        if self.failures >= self._free:
            self._locked_until = self._clock() + self._lockout()
        self._save()
        return False


_TABLE = re.compile(r"^\s*\[\s*([^\]]+?)\s*\]\s*(#.*)?$")
_PIN_KEY = re.compile(r"^\s*operator_pin\s*=")


def write_pin_to_config(path: Path, pin_hash: str) -> str:
    """Put ``operator_pin = "<hash>"`` under ``[ui]`` in the TOML file ``path`` (made if
    it does not exist), replacing the one there; every other line is kept as it was.
    Returns "replaced" or "added". Raises `UserError` (naming the file and the key to
    edit by hand) when the file is not valid TOML or keeps [ui] in a form edited here
    by no line (an inline table, dotted keys)."""
    parse_pin_hash(pin_hash)
    line = f'operator_pin = "{pin_hash}"'
    by_hand = f"put this line under [ui] in {path} by hand: {line}"
    try:
        text = path.read_text(encoding="utf-8") if path.exists() else ""
        tomllib.loads(text)
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as error:
        raise UserError(f"cannot update config file {path} ({error}); {by_hand}") from error
    lines = text.splitlines()
    header = next((i for i, row in enumerate(lines) if _table(row) == "ui"), None)
    done = "added"
    if header is None:
        if lines and lines[-1].strip():
            lines.append("")
        lines += ["[ui]", line]
    else:
        end = next(
            (i for i in range(header + 1, len(lines)) if _table(lines[i]) is not None),
            len(lines),
        )
        key = next((i for i in range(header + 1, end) if _PIN_KEY.match(lines[i])), None)
        if key is not None:
            lines[key], done = line, "replaced"
        else:
            lines.insert(header + 1, line)
    updated = "\n".join(lines) + "\n"
    try:
        written = tomllib.loads(updated)["ui"]["operator_pin"]
    except (tomllib.TOMLDecodeError, KeyError, TypeError):
        written = None
    if written != pin_hash:  # [ui] as an inline table, or dotted keys: not ours to rewrite
        raise UserError(f"config file {path} keeps [ui] in a form not edited here; {by_hand}")
    path.parent.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(path, updated.encode("utf-8"))
    return done


def _table(row: str) -> str | None:
    """The name of the table a ``[name]`` line opens (None for any other line)."""
    found = _TABLE.match(row)
    return found.group(1).strip().strip("[]").strip() if found else None
