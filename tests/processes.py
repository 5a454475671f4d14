"""The platform's processes in tests: a free loopback port, and one process (``python -m ...``) started, waited
for until it listens, and stopped afterwards. Used by the tests that run daphne, Celery and the bots for real."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextlib.contextmanager
def running(args: list[str], env: dict[str, str], log: Path, *, port: int | None = None) -> Iterator[int]:
    """``python -m <args>``; waits for ``port`` to listen when given, and stops the process (by its pid) after.
    A process that exits, or does not listen within 60 s, fails with the end of its log."""
    with log.open("ab") as out:
        process = subprocess.Popen(  # noqa: S603 - our own interpreter and fixed arguments
            [sys.executable, "-m", *args], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT
        )
    try:
        deadline = time.monotonic() + 60
        while port is not None:
            if process.poll() is not None:
                raise RuntimeError(f"{args[0]} exited with {process.returncode}:\n{log.read_text()[-3000:]}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"{args[0]} did not listen within 60 s:\n{log.read_text()[-3000:]}")
            time.sleep(0.1)
        yield process.pid
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=20)
