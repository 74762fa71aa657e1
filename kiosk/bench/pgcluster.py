"""A throwaway PostgreSQL cluster from Debian's server packages, for the site benchmark
and the tests: a folder under /tmp, a Unix socket there and 127.0.0.1 on a free port.

Local socket connections are trusted, TCP ones need a SCRAM password. As root (CI), the
cluster runs as the ``postgres`` user (initdb refuses root). ``fsync`` is off: a killed
server loses nothing (the OS keeps what was written), only a machine crash would.
"""

from __future__ import annotations

import getpass
import os
import shutil
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from models.errors import UserError

VERSIONS = ("17", "16", "15", "14", "13")


class PostgresMissing(UserError):
    """PostgreSQL's server programs are not installed here."""


def server_bin() -> Path:
    """The folder of the server programs (initdb, pg_ctl)."""
    for version in VERSIONS:
        folder = Path("/usr/lib/postgresql") / version / "bin"
        if (folder / "initdb").is_file():
            return folder
    found = shutil.which("initdb")
    if found:
        return Path(found).resolve().parent
    raise PostgresMissing(
        "PostgreSQL's server is not installed: apt-get install postgresql (Debian's package)"
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class PgCluster:
    bin: Path
    data: Path
    socket_dir: Path
    port: int
    superuser: str
    run_as: list[str]

    def ctl(self, *args: str, check: bool = True) -> None:
        log = self.data.parent / "server.log"
        command = [*self.run_as, str(self.bin / "pg_ctl"), "-D", str(self.data), "-l", str(log)]
        subprocess.run([*command, *args], check=check, capture_output=True, timeout=60)

    def start(self) -> None:
        self.ctl("-w", "-t", "30", "start")

    def stop(self, mode: str = "fast") -> None:
        """Stop; ``immediate`` is a crash (no checkpoint; recovery on the next start)."""
        self.ctl("-w", "-t", "30", "-m", mode, "stop", check=False)

    def connect(self, dbname: str = "postgres", **kwargs: Any) -> Any:
        import psycopg

        return psycopg.connect(
            host=str(self.socket_dir),
            port=self.port,
            user=self.superuser,
            dbname=dbname,
            autocommit=True,
            **kwargs,
        )

    def remove(self) -> None:
        self.stop("immediate")
        shutil.rmtree(self.data.parent, ignore_errors=True)


def start_cluster(root: Path) -> PgCluster:
    """initdb and start a cluster in ``root`` (a short path: sockets allow ~100 bytes)."""
    bin_dir = server_bin()
    root.mkdir(parents=True, exist_ok=True)
    data = root / "data"
    run_as: list[str] = []
    if os.geteuid() == 0:
        import pwd

        try:
            pwd.getpwnam("postgres")
        except KeyError:
            raise PostgresMissing("running as root, and there is no `postgres` user") from None
        runuser = shutil.which("runuser")
        if runuser is None:
            raise PostgresMissing("running as root, and `runuser` is missing")
        run_as = [runuser, "-u", "postgres", "--"]
        superuser = "postgres"
        shutil.chown(root, "postgres")
        os.chmod(root, 0o755)
    else:
        superuser = getpass.getuser()
    initdb = [str(bin_dir / "initdb"), "-D", str(data), "-A", "trust", "-U", superuser]
    done = subprocess.run(
        [*run_as, *initdb, "--no-sync", "-E", "UTF8", "--locale", "C"],
        check=False,
        capture_output=True,
        timeout=120,
    )
    if done.returncode != 0:
        stderr = done.stderr.decode("utf-8", "replace").strip()[-300:]
        raise UserError(f"initdb failed in {data}: {stderr}")
    port = free_port()
    settings = (
        f"\nport = {port}\nlisten_addresses = '127.0.0.1'\n"
        f"unix_socket_directories = '{root}'\nfsync = off\nfull_page_writes = off\n"
        "max_connections = 100\nshared_buffers = 32MB\nlog_min_messages = warning\n"
        "password_encryption = 'scram-sha-256'\n"
    )
    hba = "local all all trust\nhost all all 127.0.0.1/32 scram-sha-256\n"
    script = f"cat >> '{data}/postgresql.conf' && printf '{hba}' > '{data}/pg_hba.conf'"
    subprocess.run([*run_as, "sh", "-c", script], input=settings.encode(), check=True, timeout=30)
    cluster = PgCluster(bin_dir, data, root, port, superuser, run_as)
    cluster.start()
    return cluster
