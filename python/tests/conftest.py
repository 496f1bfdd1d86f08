"""Runs worker scripts on real local clusters: `ferrops local --servers S --workers W --
python tests/workers/SCRIPT.py ARGS...`, a scheduler and S servers as separate processes on
loopback, exactly as a user starts a job.

The `ferrops` binary is taken from $FERROPS_BIN, else from the repository's cargo target
directory ($CARGO_TARGET_DIR or target/, debug then release), else from PATH. Build it first
with `cargo build -p ferrops`.
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent.parent
WORKERS = TESTS / "workers"


def ferrops_binary() -> str:
    explicit = os.environ.get("FERROPS_BIN")
    if explicit:
        return explicit
    target = Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target"))
    if not target.is_absolute():
        target = REPO / target
    for profile in ("debug", "release"):
        candidate = target / profile / "ferrops"
        if candidate.is_file():
            return str(candidate)
    found = shutil.which("ferrops")
    if found:
        return found
    pytest.fail(
        "no ferrops binary: build it with `cargo build -p ferrops` or set FERROPS_BIN",
        pytrace=False,
    )


class Cluster:
    """Starts jobs whose workers run one of the scripts in tests/workers."""

    def __init__(self, binary: str):
        self.binary = binary

    def run(self, script: str, *args: str, servers: int = 2, workers: int = 2,
            timeout: float = 180, expect_ok: bool = True,
            env: dict = None, local_args: tuple = ()) -> subprocess.CompletedProcess:
        command = [
            self.binary, "local", "--servers", str(servers), "--workers", str(workers),
            *local_args, "--", sys.executable, str(WORKERS / script), *args,
        ]
        merged = dict(os.environ)
        merged.update(env or {})
        result = subprocess.run(
            command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            timeout=timeout, env=merged, stdin=subprocess.DEVNULL,
        )
        print(result.stdout)
        if expect_ok:
            assert result.returncode == 0, (
                f"job failed with status {result.returncode}:\n{result.stdout}"
            )
        return result


@pytest.fixture(scope="session")
def cluster() -> Cluster:
    return Cluster(ferrops_binary())
