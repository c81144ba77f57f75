"""A sentinel that outlives the test process: when pytest ends without its teardown (killed, or an xdist worker cut
off by a Ctrl-C), it kills what the fault suite started and removes the suite's directories.

The test process tells it, one line each, what to watch ("+group PID", "+pid PID", "+dir PATH") and what is gone
again ("-group PID", ...); at the end of its input (pytest's end, however it came) it kills and removes whatever is
still watched. A clean teardown has taken everything back by then, so it does nothing.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def main() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C is pytest's to handle; this one waits for its end
    watched: dict[str, set[str]] = {"group": set(), "pid": set(), "dir": set()}
    for line in sys.stdin:
        sign, kind, value = line[0], *line[1:].rstrip("\n").split(" ", 1)
        (watched[kind].add if sign == "+" else watched[kind].discard)(value)
    for pid in watched["group"]:
        _quietly(os.killpg, int(pid), signal.SIGKILL)
    for pid in watched["pid"]:
        _quietly(os.kill, int(pid), signal.SIGKILL)
    for path in watched["dir"]:
        shutil.rmtree(path, ignore_errors=True)


def _quietly(kill, pid: int, sig: int) -> None:
    try:
        kill(pid, sig)
    except OSError:  # gone already
        pass


class Reaper:
    """The test process's end of the line: one sentinel per test process, started on first use."""

    _current: Reaper | None = None

    def __init__(self) -> None:
        self.owner = os.getpid()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.faults.reaper"],
            stdin=subprocess.PIPE,
            cwd=ROOT,
            text=True,
            start_new_session=True,  # not in the test process's group: a kill of that group must not reach it
        )

    @classmethod
    def get(cls) -> Reaper:
        if cls._current is None or cls._current.owner != os.getpid():
            cls._current = cls()
        return cls._current

    def _send(self, line: str) -> None:
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def watch(self, kind: str, value) -> None:
        self._send(f"+{kind} {value}")

    def forget(self, kind: str, value) -> None:
        self._send(f"-{kind} {value}")


if __name__ == "__main__":
    main()
