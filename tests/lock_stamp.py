"""The stamp requirements.lock carries of the dependency ranges it was resolved from: `make lock` writes it, the suite
checks it, so a range changed in pyproject.toml without `make lock` fails the tests instead of installing stale pins."""

from __future__ import annotations

import hashlib
import json
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PREFIX = "# resolved from pyproject.toml dependencies sha256:"


def stamp() -> str:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    ranges = {"dependencies": project["dependencies"], "optional": project.get("optional-dependencies", {})}
    return f"{PREFIX}{hashlib.sha256(json.dumps(ranges, sort_keys=True).encode()).hexdigest()}"


def write(lock: Path) -> None:
    lines = [line for line in lock.read_text().splitlines() if not line.startswith(PREFIX)]
    lock.write_text("\n".join([stamp(), *lines]) + "\n")


if __name__ == "__main__":
    write(ROOT / (sys.argv[1] if len(sys.argv) > 1 else "requirements.lock"))
