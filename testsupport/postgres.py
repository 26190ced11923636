"""Throwaway PostgreSQL servers on free ports: a primary from `initdb`, and a streaming standby of it
from `pg_basebackup -R`. The chaos run and the replica tests start their own; the shared server of
the machine is never touched. As root, every server runs as the `postgres` system user.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import subprocess
from pathlib import Path

from testsupport.processes import free_port

# What a throwaway server needs no more of: durability (fsync) and much memory.
FAST = {"fsync": "off", "full_page_writes": "off", "synchronous_commit": "off"}


class ClusterError(RuntimeError):
    pass


def postgres_bin(name: str) -> str | None:
    """A PostgreSQL program (`initdb`, `pg_ctl`, `pg_basebackup`…): on the PATH, or in Debian's
    versioned folder (newest first)."""
    # Debian's versioned folder first: /usr/local/bin may hold only a few links into it.
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), key=lambda p: int(p.split("/")[4]))
    return candidates[-1] if candidates else shutil.which(name)


def missing_postgres_programs(*names: str) -> list[str]:
    """Which of PostgreSQL's programs `names` this machine lacks, and, as root, what running a
    server as the `postgres` user needs."""
    missing = [name for name in names if postgres_bin(name) is None]
    if os.geteuid() == 0:
        if shutil.which("runuser") is None:
            missing.append("runuser")
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            missing.append("the postgres system user")
    return missing


def private_folder(path: Path) -> Path:
    """Make `path` (a folder under a temporary one) a folder the server's user owns."""
    path.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        shutil.chown(path, "postgres", "postgres")
    return path


class PostgresCluster:
    """A throwaway PostgreSQL server on a free port, its files under `base/name`.

    `settings` are server settings (`-c name=value`) added to the defaults (listen on loopback,
    300 connections, 128 MB of shared buffers, and `FAST`). `base` must be reachable by the
    `postgres` user when running as root (mode 0755).
    """

    def __init__(
        self, base: Path, *, name: str = "pg", database: str = "shelfwise", settings: dict[str, str] | None = None
    ) -> None:
        self.dir = base / name
        self.socket_dir = base / f"{name}sock"
        # In the folder the postgres user owns a way into.
        self.log = base / ("postgres.log" if name == "pg" else f"{name}.log")
        self.port = free_port()
        self.database = database
        self.settings = {
            "listen_addresses": "127.0.0.1",
            "max_connections": "300",
            **FAST,
            "shared_buffers": "128MB",
            **(settings or {}),
        }
        self.initdb, self.pg_ctl = postgres_bin("initdb"), postgres_bin("pg_ctl")
        if not self.initdb or not self.pg_ctl:
            raise ClusterError("initdb and pg_ctl are required (the postgresql package)")
        self.url = f"postgres://postgres@127.0.0.1:{self.port}/{database}"

    def _as_owner(self, argv: list[str]) -> list[str]:
        return ["runuser", "-u", "postgres", "--", *argv] if os.geteuid() == 0 else argv

    def _run(self, argv: list[str], timeout: float = 120) -> str:
        result = subprocess.run(self._as_owner(argv), capture_output=True, text=True, timeout=timeout)
        if result.returncode != 0:
            raise ClusterError(f"{' '.join(argv[:2])} failed: {result.stdout}{result.stderr}")
        return result.stdout

    def _folders(self) -> None:
        for folder in (self.dir, self.socket_dir):
            private_folder(folder)
        self.dir.chmod(0o700)
        self.log.touch()
        if os.geteuid() == 0:
            shutil.chown(self.log, "postgres", "postgres")

    def init(self) -> None:
        """A new cluster with the database `database`, started."""
        self._folders()
        self._run([self.initdb, "-D", str(self.dir), "-U", "postgres", "-A", "trust", "--no-sync", "-E", "UTF8"])
        self.start()
        self.psql_command("postgres", f'CREATE DATABASE "{self.database}"')

    def init_standby_of(self, primary: PostgresCluster) -> None:
        """A streaming standby of `primary` (a base backup with `-R`: it follows the primary's
        WAL and answers read-only queries), started."""
        self._folders()
        self._run(
            [
                postgres_bin("pg_basebackup") or "pg_basebackup",
                "-h",
                "127.0.0.1",
                "-p",
                str(primary.port),
                "-U",
                "postgres",
                "-D",
                str(self.dir),
                "-R",
                "-X",
                "stream",
                "-c",
                "fast",
                "--no-sync",
            ]
        )
        self.start()

    def _options(self) -> str:
        return f"-p {self.port} -k {self.socket_dir} " + " ".join(f"-c {k}={v}" for k, v in self.settings.items())

    def start(self) -> None:
        self._run(
            [self.pg_ctl, "-D", str(self.dir), "-o", self._options(), "-l", str(self.log), "-w", "-t", "60", "start"]
        )

    def restart(self) -> None:
        """A fast restart: every connection is cut, and the server is back a moment later."""
        self._run(
            [
                self.pg_ctl,
                "-D",
                str(self.dir),
                "-o",
                self._options(),
                "-l",
                str(self.log),
                "-m",
                "fast",
                "-w",
                "-t",
                "60",
                "restart",
            ]
        )

    def stop(self) -> None:
        """Stop at once (no checkpoint); nothing if it is not running."""
        if (self.dir / "postmaster.pid").exists():
            with contextlib.suppress(ClusterError, subprocess.TimeoutExpired):
                self._run([self.pg_ctl, "-D", str(self.dir), "-m", "immediate", "-w", "-t", "30", "stop"], timeout=40)

    def psql_command(self, database: str, sql: str) -> str:
        """Run `sql` with psql in `database`; its output, unaligned and without headers."""
        psql = postgres_bin("psql") or "psql"
        return self._run(
            [psql, "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "-d", database, "-XAtq", "-c", sql]
        )
