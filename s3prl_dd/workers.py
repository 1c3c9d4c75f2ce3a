"""Worker processes that cannot outlive the process that started them.

A SIGKILL (or an OOM kill, or a lost terminal) of the pipeline driver runs none of its cleanup,
so its process-pool children would be re-parented and keep writing into a run directory that a
restarted pipeline also uses. Two independent guards, installed by ``init_worker`` (the pool's
initializer, so it runs in the child before any job):

- Linux ``prctl(PR_SET_PDEATHSIG, SIGKILL)``: the kernel kills the child the moment its parent
  dies. Instant, but Linux-only and tied to the parent *thread* that spawned the child.
- a watchdog thread that polls ``os.getppid()`` and kills its own process once the parent
  changed (re-parenting to init or a subreaper): portable and catches what the first misses.

Killing (not exiting cleanly) is safe because every file the stages write is written to a temp
file and renamed: a killed job leaves its previous state, which the rerun continues.
"""
from __future__ import annotations

import os
import signal
import sys
import threading

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
WATCH_INTERVAL_S = 0.5


def _set_parent_death_signal(sig: int) -> bool:
    if not sys.platform.startswith("linux"):
        return False
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def _watch_parent(parent_pid: int, interval: float) -> None:
    import time

    while True:
        if os.getppid() != parent_pid:
            _die()
        time.sleep(interval)


def init_worker(parent_pid: int, num_threads: int | None = 1) -> None:
    """Pool initializer: tie this process's life to ``parent_pid`` (the driver), then set the
    torch thread count (workers share the cores, so one thread each by default)."""
    _set_parent_death_signal(signal.SIGKILL)
    # the parent may have died before the death signal was armed: the kernel would not send it
    if os.getppid() != parent_pid:
        _die()
    threading.Thread(target=_watch_parent, args=(parent_pid, WATCH_INTERVAL_S), daemon=True,
                     name="parent-watchdog").start()
    if num_threads:
        import torch

        torch.set_num_threads(num_threads)
