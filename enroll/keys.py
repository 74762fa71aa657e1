"""The operator's key for encryption at rest: $KIOSK_STORE_KEY, else the OS keyring."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from models.errors import UserError

if TYPE_CHECKING:
    from cryptography.fernet import Fernet

KEY_ENV = "KIOSK_STORE_KEY"
KEYRING_SERVICE = "clip-face-kiosk"
KEYRING_USER = "people-store"
NEW_KEY_HINT = "`kiosk people new-key` prints a fresh key"


def operator_key() -> bytes | None:
    """The key from the environment, else from the keyring (if the package is installed)."""
    value = os.environ.get(KEY_ENV)
    if value:
        return value.strip().encode("ascii", "replace")
    try:
        import keyring
    except ImportError:
        return None
    try:
        stored = keyring.get_password(KEYRING_SERVICE, KEYRING_USER)
    except Exception:  # no keyring backend on this machine: same as no key
        return None
    return stored.strip().encode("ascii", "replace") if stored else None


def new_key() -> str:
    from cryptography.fernet import Fernet

    return Fernet.generate_key().decode("ascii")


def cipher(key: bytes) -> Fernet:
    from cryptography.fernet import Fernet

    try:
        return Fernet(key)
    except ValueError:
        raise UserError(
            f"the store key in ${KEY_ENV} (or the keyring) is not a valid Fernet key "
            f"(32 url-safe base64-encoded bytes); {NEW_KEY_HINT}"
        ) from None
