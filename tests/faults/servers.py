"""A private PostgreSQL cluster and a private Redis server, each on its own port and directory, to crash at will.

The shared servers the rest of the suite uses must never be stopped by a test; these exist only for one scenario.
"""

from __future__ import annotations

import glob
import os
import pwd
import re
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

import psycopg
from redis import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

from tests.conftest import wait_until
from tests.faults.processes import Process
from tests.faults.reaper import Reaper
from tests.helpers import free_port

PG_BIN_GLOB = "/usr/lib/postgresql/*/bin"
START_SECONDS = 60


class HarnessError(RuntimeError):
    """The machine lacks what the fault suite needs: a clear failure, never a skip."""


def postgres_bin() -> Path:
    """The newest installed PostgreSQL server binaries (FAULTS_PG_BIN overrides the Debian/Ubuntu layout)."""
    given = os.environ.get("FAULTS_PG_BIN")
    candidates = [given] if given else glob.glob(PG_BIN_GLOB)

    def version(path: str) -> tuple:
        return tuple(int(n) for n in re.findall(r"\d+", path)) or (0,)

    for found in sorted(candidates, key=version, reverse=True):
        if (Path(found) / "initdb").exists() and (Path(found) / "pg_ctl").exists():
            return Path(found)
    raise HarnessError(
        f"the fault suite needs PostgreSQL's server binaries (initdb, pg_ctl) in {given or PG_BIN_GLOB}: "
        "install them (apt-get install postgresql) or point FAULTS_PG_BIN at their directory"
    )


def _server_user() -> str | None:
    """PostgreSQL refuses to run as root: as root, run it as the `postgres` account the package created."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        raise HarnessError("running as root, the fault suite needs a `postgres` user to run PostgreSQL as") from None
    return "postgres"


class PostgresCluster:
    """initdb into a temporary directory; start, crash (stop -m immediate), stop (-m fast) and start again."""

    def __init__(self) -> None:
        self.bin = postgres_bin()
        self.user = _server_user()
        self.root = Path(tempfile.mkdtemp(prefix="leadpulse-faults-pg-"))
        Reaper.get().watch("dir", self.root)
        self.postmaster: int | None = None
        if self.user:
            shutil.chown(self.root, self.user)
        self.data, self.log = self.root / "data", self.root / "postgres.log"
        self.port = free_port()
        try:
            self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "-E", "UTF8", "--no-sync")
        except BaseException:
            shutil.rmtree(self.root, ignore_errors=True)
            Reaper.get().forget("dir", self.root)
            raise

    def _run(self, tool: str, *args: str, timeout: float = START_SECONDS) -> None:
        out = subprocess.run(
            [str(self.bin / tool), *args],
            user=self.user,
            cwd=self.root,
            capture_output=True,
            text=True,
            timeout=timeout,
            start_new_session=True,
        )
        if out.returncode != 0:
            raise HarnessError(f"{tool} {' '.join(args)} failed ({out.returncode}):\n{out.stdout}{out.stderr}")

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def start(self) -> None:
        # fsync off: the faults here kill processes, never the machine, so the OS keeps every write PostgreSQL made
        # (its crash recovery still runs in full); syncing would only slow the suite on a shared disk.
        options = (
            f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200 "
            "-c shared_buffers=64MB"
        )
        self._run(
            "pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w", "-t", str(START_SECONDS), "-o", options, "start"
        )
        self.postmaster = int((self.data / "postmaster.pid").read_text().split()[0])
        Reaper.get().watch("pid", self.postmaster)

    def _stopped(self) -> None:
        Reaper.get().forget("pid", self.postmaster)
        self.postmaster = None

    def crash(self) -> None:
        """Every server process ends at once without a checkpoint; the next start replays the WAL."""
        self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        self._stopped()

    def stop(self) -> None:
        """A clean, fast shutdown: clients are disconnected, open transactions rolled back."""
        self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")
        self._stopped()

    def running(self) -> bool:
        try:
            psycopg.connect(f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres", connect_timeout=2).close()
            return True
        except psycopg.OperationalError:
            return False

    def create_database(self, name: str) -> str:
        with psycopg.connect(
            f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres", autocommit=True, connect_timeout=10
        ) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def close(self) -> None:
        """Whatever state it is in: stop it at once (killing a postmaster pg_ctl cannot stop), remove its files."""
        pid_file = self.data / "postmaster.pid"
        if pid_file.exists():
            try:
                self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "-t", "20", "stop", timeout=30)
            except (HarnessError, subprocess.TimeoutExpired):
                pass
            if pid_file.exists():
                try:
                    os.kill(int(pid_file.read_text().split()[0]), signal.SIGKILL)
                except (ValueError, ProcessLookupError):
                    pass
        if self.postmaster is not None:
            self._stopped()
        shutil.rmtree(self.root, ignore_errors=True)
        Reaper.get().forget("dir", self.root)

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


class RedisServer:
    """redis-server with no persistence: a restart loses everything, as a Redis without AOF or RDB would."""

    def __init__(self) -> None:
        exe = shutil.which("redis-server")
        if exe is None:
            raise HarnessError("the fault suite needs redis-server on PATH (apt-get install redis-server)")
        self.exe = exe
        self.root = Path(tempfile.mkdtemp(prefix="leadpulse-faults-redis-"))
        Reaper.get().watch("dir", self.root)
        self.port = free_port()
        self.process: Process | None = None
        self.starts = 0

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self) -> Redis:
        return Redis(host="127.0.0.1", port=self.port, socket_timeout=5, socket_connect_timeout=2)

    def start(self) -> None:
        self.starts += 1
        argv = [self.exe, "--bind", "127.0.0.1", "--port", str(self.port), "--save", "", "--appendonly", "no"]
        argv += ["--dir", str(self.root)]
        self.process = Process(f"redis-{self.starts}", argv, dict(os.environ), self.root / f"redis-{self.starts}.log")
        self.process.start()
        client = self.client()

        def up() -> bool:
            if not self.process.alive():
                raise HarnessError(f"redis-server exited:\n{self.process.log_tail()}")
            try:
                return bool(client.ping())
            except (RedisConnectionError, OSError):  # not listening yet
                return False

        try:
            wait_until(up, timeout=START_SECONDS, message=f"redis-server on port {self.port}")
        finally:
            client.close()

    def kill(self) -> None:
        """kill -9: no save, no goodbye to clients."""
        if self.process is not None:
            self.process.kill()

    def flushall(self) -> None:
        client = self.client()
        try:
            client.flushall()
        finally:
            client.close()

    def close(self) -> None:
        if self.process is not None:
            self.process.close()
        shutil.rmtree(self.root, ignore_errors=True)
        Reaper.get().forget("dir", self.root)
