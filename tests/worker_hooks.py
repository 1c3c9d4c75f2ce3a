"""Stand-ins for pipeline jobs that spawned workers can import (tests/ is on their sys.path):
each records its pid in $HOOK_DIR and hangs, so a test can kill the driver mid-stage."""
import os
import time
from pathlib import Path


def _mark_and_hang(kind: str) -> None:
    (Path(os.environ["HOOK_DIR"]) / f"{kind}-{os.getpid()}").touch()
    time.sleep(300)


def hanging_gan_job(*job):
    _mark_and_hang("gan")


def hanging_cell(cell, ctx):
    _mark_and_hang("cell")


def drive(config: str, out: str, hang: str) -> None:
    """The pipeline with one stage's jobs replaced by hanging ones (run as a separate process)."""
    from s3prl_dd.pipeline import run as run_mod

    if hang == "gan":
        run_mod._gan_job = hanging_gan_job
    elif hang == "cell":
        run_mod.run_cell = hanging_cell
    run_mod.run_pipeline(config, out=out, report=False)

