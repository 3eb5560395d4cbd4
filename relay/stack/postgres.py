"""A local PostgreSQL server for the history's record: Debian's ``postgresql`` package's
programs (``initdb``, ``pg_ctl``), a cluster in a directory of its own on loopback, with a
password of its own. ``RELAY_HISTORY=postgres`` has the stack start one (no DSN given);
the tests start one the same way.

PostgreSQL refuses to run as root: as root, the cluster is made and run as the package's
``postgres`` user, in a directory it owns.
"""

from __future__ import annotations

import glob
import logging
import os
import pwd
import secrets
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from relay.errors import ConfigError

log = logging.getLogger(__name__)

USER = "pd_relay"  # the cluster's superuser, and the relay's
DATABASE = "pd_relay"


def binaries() -> Path:
    """The directory of Debian's PostgreSQL programs (the newest version installed), or
    ConfigError saying how to install them."""
    found = shutil.which("pg_ctl")
    if found:
        return Path(os.path.realpath(found)).parent
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"),
                      key=lambda p: int(p.split("/")[4]) if p.split("/")[4].isdigit() else 0)
    if versions:
        return Path(versions[-1]).parent
    raise ConfigError(["no PostgreSQL server on this machine: install Debian's package "
                       "(apt-get install postgresql) or give RELAY_HISTORY_DSN"])


@dataclass(frozen=True)
class LocalPostgres:
    """A cluster in ``home`` (made on first start), listening on 127.0.0.1:``port`` and
    a socket in ``home``."""

    home: Path
    port: int

    @property
    def data(self) -> Path:
        return self.home / "data"

    @property
    def password_file(self) -> Path:
        return self.home / "password"

    def dsn(self, database: str = DATABASE) -> str:
        password = quote(self.password_file.read_text().strip(), safe="")
        return f"postgresql://{USER}:{password}@127.0.0.1:{self.port}/{database}"

    def start(self, timeout_s: float = 60.0) -> None:
        """Make the cluster if it is not there yet, start it and wait until it takes
        connections, and make the relay's database."""
        bindir = binaries()
        self.home.mkdir(parents=True, exist_ok=True)
        if not (self.data / "PG_VERSION").exists():
            self._initdb(bindir)
        self._run([str(bindir / "pg_ctl"), "-D", str(self.data), "-l",
                   str(self.home / "postgresql.log"), "-w", "-t", str(int(timeout_s)), "-o",
                   f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.home}", "start"],
                  timeout_s + 5)
        self.create_database(DATABASE)

    def stop(self, timeout_s: float = 60.0) -> None:
        """Stop the server (fast: its sessions are ended); nothing if it is not running."""
        if not (self.data / "postmaster.pid").exists():
            return
        self._run([str(binaries() / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w",
                   "-t", str(int(timeout_s)), "stop"], timeout_s + 5, check=False)

    def create_database(self, name: str) -> None:
        """Make database ``name`` unless it exists."""
        import psycopg  # the stack's other modes need no PostgreSQL driver loaded

        with psycopg.connect(self.dsn("postgres"), autocommit=True, connect_timeout=10) as conn:
            if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s",
                                (name,)).fetchone():
                conn.execute(f'CREATE DATABASE "{name}"')

    def _initdb(self, bindir: Path) -> None:
        self.password_file.write_text(secrets.token_urlsafe(24) + "\n")
        self.password_file.chmod(0o600)
        self._own(self.home)
        self._run([str(bindir / "initdb"), "-D", str(self.data), "-U", USER, "-E", "UTF8",
                   "--locale=C", "--auth=scram-sha-256", f"--pwfile={self.password_file}"],
                  120)

    def _own(self, path: Path) -> None:
        """As root: hand ``path`` (and what it holds) to the ``postgres`` user."""
        if os.geteuid() != 0:
            return
        user = _postgres_user()
        for found in [path, *path.rglob("*")]:
            os.chown(found, user.pw_uid, user.pw_gid)

    def _run(self, argv: list[str], timeout_s: float, check: bool = True) -> None:
        user = _postgres_user().pw_name if os.geteuid() == 0 else None
        done = subprocess.run(argv, user=user, capture_output=True, text=True,
                              timeout=timeout_s, cwd=self.home, check=False)
        if check and done.returncode:
            raise ConfigError([f"{Path(argv[0]).name} failed ({done.returncode}): "
                               f"{(done.stderr or done.stdout).strip()[-2000:]}"])


def _postgres_user() -> pwd.struct_passwd:
    try:
        return pwd.getpwnam("postgres")
    except KeyError:
        raise ConfigError(["PostgreSQL does not run as root, and there is no 'postgres' "
                           "user to run it as: install Debian's postgresql package"]) from None
