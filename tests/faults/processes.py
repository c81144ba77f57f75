"""Processes the fault suite starts, each in a process group of its own, so a kill or the teardown reaches its
children too (gunicorn's workers, RQ's scheduler); and LeadPulse deployed as `leadpulse web` and `leadpulse worker`."""

from __future__ import annotations

import http.client
import os
import signal
import subprocess
import sys
from pathlib import Path

from redis import Redis
from rq import Worker

from config import Settings
from tests.conftest import wait_until
from tests.faults.reaper import Reaper

ROOT = Path(__file__).resolve().parents[2]
START_SECONDS = 60  # a cold Python start under a loaded shared machine; a healthy one takes ~3 s


class Process:
    """One command, its own session and process group, its output in a log file (a pipe nobody reads would stall it)."""

    def __init__(self, name: str, argv: list[str], env: dict, log: Path, cwd: Path = ROOT) -> None:
        self.name, self.argv, self.env, self.log, self.cwd = name, argv, env, log, cwd
        self.popen: subprocess.Popen | None = None

    def start(self) -> Process:
        with open(self.log, "ab") as out:
            self.popen = subprocess.Popen(
                self.argv, env=self.env, cwd=self.cwd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        Reaper.get().watch("group", self.popen.pid)
        return self

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen is not None and self.exit_code() is None

    def exit_code(self) -> int | None:
        """The exit status, without reaping: an exited leader stays a zombie, so its pid (our process group's id)
        cannot be reused by another process before close() has killed the group and reaped it."""
        if self.popen.returncode is not None:
            return self.popen.returncode
        try:
            info = os.waitid(os.P_PID, self.popen.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:
            return self.popen.poll()
        if info is None:
            return None
        return -info.si_status if info.si_code in (os.CLD_KILLED, os.CLD_DUMPED) else info.si_status

    def signal_group(self, sig: int) -> None:
        """The whole group: the leader may be gone while its children live on. Once reaped (only ever after a
        SIGKILL of the group), its id may belong to someone else: never signalled again."""
        if self.popen is None or self.popen.returncode is not None:
            return
        try:
            os.killpg(self.popen.pid, sig)
        except ProcessLookupError:
            pass

    def kill(self) -> None:
        """kill -9 of the process and everything it started: no cleanup runs, no lock is released."""
        self.signal_group(signal.SIGKILL)
        self.popen.wait(timeout=30)
        Reaper.get().forget("group", self.popen.pid)

    def close(self) -> None:
        """Teardown: nothing of it may outlive the test."""
        if self.popen is None:
            return
        self.signal_group(signal.SIGKILL)
        try:
            self.popen.wait(timeout=30)
        except subprocess.TimeoutExpired:
            return  # still there: the reaper kills it when the test process ends
        Reaper.get().forget("group", self.popen.pid)

    def children(self) -> list[int]:
        """Pids whose parent is this process (gunicorn's workers under its master)."""
        found = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            if int(fields[1]) == self.popen.pid:
                found.append(int(stat.parent.name))
        return sorted(found)

    def log_tail(self, lines: int | None = 60) -> str:
        """The last `lines` lines of its output (None: all of it)."""
        try:
            text = self.log.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join(text[-lines:] if lines else text)


def sockets_on_port(port: int) -> set[str]:
    """Inodes of the TCP sockets whose local end is `port` (/proc/net/tcp{,6}: local address is the second field)."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if int(fields[1].rsplit(":", 1)[1], 16) == port:
                found.add(fields[9])
    return found


def process_sockets(pids: list[int]) -> set[str]:
    """Inodes of the sockets these processes hold open."""
    found = set()
    for pid in pids:
        try:
            fds = list(Path(f"/proc/{pid}/fd").iterdir())
        except OSError:
            continue
        for fd in fds:
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target.startswith("socket:["):
                found.add(target[8:-1])
    return found


def http_get(port: int, path: str, timeout: float = 5) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        resp.read()
        return resp.status
    finally:
        conn.close()


class Deployment:
    """`leadpulse web` (gunicorn, its default two gevent workers) and `leadpulse worker` processes on one
    configuration, as production runs them: the fault suite tunes none of the timings the promises depend on."""

    def __init__(self, root: Path, env: dict, settings: Settings) -> None:
        self.root, self.env = root, env
        self.redis_url, self.port = settings.redis_url, settings.port
        self.web: Process | None = None
        self.workers: list[Process] = []
        self.retired: list[Process] = []  # killed on purpose: logs kept for a failure's story
        self._count = 0

    def _leadpulse(self, name: str, *args: str) -> Process:
        return Process(name, [sys.executable, "-m", "worker.cli", *args], self.env, self.root / f"{name}.log")

    # web
    def start_web(self) -> None:
        """Started, not yet answering: wait_web() waits (so workers can start meanwhile, on a busy machine)."""
        self.web = self._leadpulse("web", "web").start()

    def wait_web(self) -> None:
        def up() -> bool:
            assert self.web.alive(), f"leadpulse web exited:\n{self.web.log_tail()}"
            try:
                return http_get(self.port, "/") == 200
            except OSError:
                return False

        wait_until(up, timeout=START_SECONDS, interval=0.1, message="leadpulse web to answer")

    def web_workers(self) -> list[int]:
        return self.web.children()

    def kill_web_worker(self, pid: int) -> None:
        """kill -9 one gunicorn worker mid-request; the master notices and forks a new one."""
        os.kill(pid, signal.SIGKILL)

    def wait_web_workers(self, count: int, not_in: set[int]) -> None:
        wait_until(
            lambda: len(set(self.web_workers()) - not_in) >= count,
            timeout=START_SECONDS,
            interval=0.1,
            message=f"gunicorn to have {count} fresh workers",
        )

    # workers
    def start_worker(self) -> Process:
        self._count += 1
        proc = self._leadpulse(f"worker-{self._count}", "worker").start()
        self.workers.append(proc)
        return proc

    def wait_registered(self, procs: list[Process]) -> None:
        """Each has registered with RQ (its connections and imports done): the scenario starts on a ready pool."""

        def ready() -> bool:
            for p in procs:
                assert p.alive(), f"{p.name} exited:\n{p.log_tail()}"
            return {p.pid for p in procs} <= set(self.rq_workers())

        wait_until(ready, timeout=START_SECONDS, interval=0.1, message="the workers to register with RQ")

    def top_up(self, count: int) -> None:
        """Start workers until `count` live ones run (after kills, as a supervisor would)."""
        self.workers, dead = [p for p in self.workers if p.alive()], [p for p in self.workers if not p.alive()]
        self.retired += dead
        self.wait_registered([self.start_worker() for _ in range(count - len(self.workers))])

    def rq_workers(self) -> set[int]:
        """Pids of the workers registered with RQ (a Redis flush forgets them; only the start waits on this)."""
        redis = Redis.from_url(self.redis_url, socket_timeout=5)
        try:
            return {w.pid for w in Worker.all(connection=redis) if w.pid}
        finally:
            redis.close()

    def worker(self, pid: int) -> Process | None:
        """The live worker with this pid (a worker's database connections name it, models/db.py)."""
        return next((p for p in self.workers if p.pid == pid and p.alive()), None)

    def worker_on_port(self, port: int) -> Process | None:
        """The live worker that owns the TCP connection from local `port` (the port PostgreSQL or Slack saw)."""
        inodes = sockets_on_port(port)
        for proc in self.workers:
            if proc.alive() and inodes & process_sockets([proc.pid, *proc.children()]):
                return proc
        return None

    def kill_worker(self, proc: Process) -> None:
        proc.kill()
        self.workers.remove(proc)
        self.retired.append(proc)

    def dead_workers(self) -> list[Process]:
        """Workers that ended without being killed on purpose."""
        return [p for p in self.workers if not p.alive()]

    def close(self) -> None:
        for proc in [*self.workers, *([self.web] if self.web else []), *self.retired]:
            proc.close()

    def logs(self, lines: int = 40) -> str:
        return "\n".join(
            f"----- {p.name} (exit {p.exit_code()})\n{p.log_tail(lines)}"
            for p in [*([self.web] if self.web else []), *self.workers, *self.retired]
        )
