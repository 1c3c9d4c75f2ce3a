"""One writer per run directory.

A lock file ``.lock`` in the run directory, held with ``fcntl.flock`` for as long as the
pipeline (or a resumed distill run) works in it. The kernel releases a flock when its holder
dies, however it dies, so a lock left by a killed process is simply free: the next run takes it
over without any stale-pid guessing. The file's content (pid, host) is only there to name the
holder in the refusal. Where fcntl does not exist (Windows) no lock is taken.
"""
from __future__ import annotations

import json
import os
import socket
from contextlib import contextmanager
from pathlib import Path

from .errors import UserError

LOCK_NAME = ".lock"


def _holder(path: Path) -> str:
    try:
        info = json.loads(path.read_text() or "{}")
    except (OSError, ValueError):
        info = {}
    pid, host = info.get("pid", "?"), info.get("host")
    where = f" on {host}" if host and host != socket.gethostname() else ""
    return f"{info.get('what', 'another process')} (pid {pid}{where})"


@contextmanager
def run_lock(run_dir: str | os.PathLike, what: str = "another process"):
    """Hold ``run_dir``'s lock for the ``with`` block (``what``: this holder, for the message a
    second comer gets); a live holder -> one-line UserError naming its pid."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        yield
        return
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / LOCK_NAME
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise UserError(f"{run_dir} is in use by {_holder(path)}; wait for it to end or stop it") from None
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "what": what}).encode())
        yield path
    finally:
        os.close(fd)  # releases the flock
