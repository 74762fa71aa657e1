"""The operator PIN: stored only as a salted scrypt hash, checked in constant time.

A stored hash reads ``scrypt$<n>$<r>$<p>$<salt>$<digest>`` (salt and digest in
URL-safe base64), so the cost parameters travel with it and can be raised later
without breaking old configs. `kiosk pin` makes one for the config's ``[ui] operator_pin``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import secrets
import time
import tomllib
from collections.abc import Callable
from pathlib import Path

from models.errors import UserError
from models.io import write_bytes_atomic

SCHEME = "scrypt"
# 2**14 x 8 x 1 costs ~16 MiB and ~0.1 s: cheap for one operator, slow for a guesser.
_N, _R, _P = 2**14, 8, 1
_SALT_BYTES = 16
_DIGEST_BYTES = 32
MIN_PIN_LENGTH = 4
MAX_PIN_LENGTH = 64


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _digest(pin: str, salt: bytes, n: int, r: int, p: int, size: int) -> bytes:
    return hashlib.scrypt(
        pin.encode("utf-8"), salt=salt, n=n, r=r, p=p, dklen=size, maxmem=256 * 1024 * 1024
    )


def check_pin_text(pin: str) -> None:
    """Raise UserError unless ``pin`` is acceptable as a new operator PIN."""
    if not MIN_PIN_LENGTH <= len(pin) <= MAX_PIN_LENGTH:
        raise UserError(
            f"the operator PIN must have {MIN_PIN_LENGTH} to {MAX_PIN_LENGTH} characters"
        )
    if any(ch.isspace() for ch in pin):
        raise UserError("the operator PIN must not contain spaces")


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
    try:
        n, r, p = (int(x) for x in parts[1:4])
        salt, digest = _unb64(parts[4]), _unb64(parts[5])
    except (ValueError, binascii.Error):
        raise ValueError("is a damaged PIN hash; make a new one with `kiosk pin`") from None
    if n < 2 or n & (n - 1) or r < 1 or p < 1 or len(salt) < 8 or len(digest) < 16:
        raise ValueError("is a damaged PIN hash; make a new one with `kiosk pin`")
    return n, r, p, salt, digest


def verify_pin(pin: str, stored: str) -> bool:
    """Whether ``pin`` matches ``stored`` (a hash from `hash_pin`)."""
    n, r, p, salt, digest = parse_pin_hash(stored)
    return hmac.compare_digest(_digest(pin, salt, n, r, p, len(digest)), digest)


class PinGate:
    """Checks PIN attempts and slows a guesser down: after ``free_attempts`` wrong PINs in
    a row each further one locks the gate for twice as long (5 s, 10 s, ... up to 5 min).
    It lives as long as the window, so closing the PIN dialog does not reset it."""

    def __init__(
        self,
        stored: str,
        *,
        free_attempts: int = 3,
        first_lockout_s: float = 5.0,
        max_lockout_s: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        parse_pin_hash(stored)
        self._stored = stored
        self._free = free_attempts
        self._first = first_lockout_s
        self._max = max_lockout_s
        self._clock = clock
        self.failures = 0
        self._locked_until = 0.0

    def locked_for(self) -> float:
        """Seconds until the next attempt is allowed (0 when it is allowed now)."""
        return max(0.0, self._locked_until - self._clock())

    def attempt(self, pin: str) -> bool:
        """Whether ``pin`` is right. While locked every attempt is refused unchecked."""
        if self.locked_for() > 0:
            return False
        if verify_pin(pin, self._stored):
            self.failures = 0
            return True
        self.failures += 1
        if self.failures >= self._free:
            lockout = self._first * 2 ** (self.failures - self._free)
            self._locked_until = self._clock() + min(lockout, self._max)
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
