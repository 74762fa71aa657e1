"""Credentials and the connection to the site registry.

The password comes from ``$KIOSK_SITE_PASSWORD``, else the OS keyring (service
``clip-face-kiosk``, user ``site:<user>@<host>``), else nowhere: libpq then uses its own
means (``~/.pgpass``, a client certificate, peer authentication on a Unix socket). It is
handed to libpq as a keyword and never formatted into a string this program prints or
logs: :func:`describe` is the only description of a connection anyone sees.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

from kiosk.config import SiteConfig
from models.errors import UserError

PASSWORD_ENV = "KIOSK_SITE_PASSWORD"
KEYRING_SERVICE = "clip-face-kiosk"
CHANNEL = "kiosk_site_changes"  # LISTEN/NOTIFY channel of the change feed


class SiteUnreachable(UserError):
    """The registry cannot be reached now (network, server down): an offline kiosk."""


class SiteRefused(UserError):
    """The registry refused an operation for good (privileges, a name already taken)."""


def keyring_user(config: SiteConfig) -> str:
    return f"site:{config.user}@{config.host or 'localhost'}"


def password(config: SiteConfig) -> str | None:
    """The role's password: the environment, else the keyring, else None (libpq decides)."""
    value = os.environ.get(PASSWORD_ENV)
    if value:
        return value
    try:
        import keyring
    except ImportError:
        return None
    try:
        stored = keyring.get_password(KEYRING_SERVICE, keyring_user(config))
    except Exception:  # no keyring backend on this machine: same as no password
        return None
    return stored or None


def password_source(config: SiteConfig) -> str:
    """Where the password comes from, for `kiosk doctor`: never the password itself."""
    if os.environ.get(PASSWORD_ENV):
        return f"${PASSWORD_ENV}"
    try:
        import keyring

        if keyring.get_password(KEYRING_SERVICE, keyring_user(config)):
            return f"keyring ({KEYRING_SERVICE}, {keyring_user(config)})"
    except Exception:
        pass
    return "none set (libpq: ~/.pgpass, certificate or peer authentication)"


def describe(config: SiteConfig) -> str:
    """The connection in words, without any secret."""
    where = config.host or "the local socket"
    return (
        f"postgresql://{config.user}@{where}:{config.port}/{config.dbname} "
        f"(sslmode={config.sslmode})"
    )


def connection_kwargs(config: SiteConfig) -> dict[str, Any]:
    kwargs: dict[str, Any] = {
        "dbname": config.dbname,
        "user": config.user,
        "port": config.port,
        "sslmode": config.sslmode,
        "connect_timeout": config.connect_timeout_s,
        "application_name": f"kiosk {config.kiosk_id}"[:63],
    }
    if config.host:
        kwargs["host"] = config.host
    if config.sslrootcert is not None:
        kwargs["sslrootcert"] = str(config.sslrootcert.expanduser())
    secret = password(config)
    if secret is not None:
        kwargs["password"] = secret
    return kwargs


def psycopg_module() -> Any:
    try:
        import psycopg
    except ImportError:
        raise UserError(
            "a [site] needs psycopg 3: pip install 'clip-face-kiosk[postgres]' "
            "(or pip install 'psycopg[binary]')"
        ) from None
    return psycopg


def connect(config: SiteConfig, *, autocommit: bool = False) -> Any:
    """A connection to the registry; :class:`SiteUnreachable` when there is none to have."""
    psycopg = psycopg_module()
    try:
        conn = psycopg.connect(autocommit=autocommit, **connection_kwargs(config))
    except psycopg.OperationalError as error:
        raise SiteUnreachable(
            f"the site registry {describe(config)} cannot be reached: {first_line(error)}"
        ) from None
    return conn


def first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__


@contextlib.contextmanager
def registry_errors() -> Iterator[None]:
    """Turn the driver's errors into the messages a user can act on (no traceback)."""
    psycopg = psycopg_module()
    try:
        yield
    except psycopg.OperationalError as error:
        raise SiteUnreachable(f"the site registry cannot be reached: {first_line(error)}") from None
    except psycopg.errors.InsufficientPrivilege as error:
        raise SiteRefused(
            f"this database role may not do that: {first_line(error)}; a door kiosk may not "
            "enroll or erase, only kiosk_operator members may erase or publish"
        ) from None
    except psycopg.Error as error:
        raise SiteRefused(f"the site registry refused it: {first_line(error)}") from None
