"""kill -9 of the pipeline driver leaves no live worker; the rerun equals an uninterrupted run;
a second pipeline on a run directory in use is refused."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from test_pipeline import TINY

from s3prl_dd.pipeline import run as run_mod
from s3prl_dd.runlock import run_lock
from s3prl_dd.utils import UserError

TESTS = Path(__file__).resolve().parent
# two GAN jobs and several cells, so that both stages go through the process pool
CFG = {**TINY, "workers": 2, "gan": {**TINY["gan"], "variants": ["baseline", "div"]}, "sources": ["real", "gan"]}


def _children(pid: int) -> set[int]:
    out = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.add(int(stat.parent.name))
    return out


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")  # a zombie runs no code


def _kill_driver_mid(stage: str, cfg: Path, out: Path, hooks: Path) -> None:
    env = {**os.environ, "HOOK_DIR": str(hooks), "OMP_NUM_THREADS": "1"}
    code = f"import sys; sys.path.insert(0, {str(TESTS)!r}); import worker_hooks; " \
           f"worker_hooks.drive({str(cfg)!r}, {str(out)!r}, {stage!r})"
    driver = subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE)
    deadline = time.time() + 60
    while len(list(hooks.glob(f"{stage}-*"))) < 2:  # both workers are inside a job
        assert driver.poll() is None, driver.stderr.read().decode()[-2000:]
        assert time.time() < deadline, f"no {stage} job started"
        time.sleep(0.1)
    workers = {int(p.name.split("-")[1]) for p in hooks.glob(f"{stage}-*")} | _children(driver.pid)
    driver.send_signal(signal.SIGKILL)
    driver.wait()
    deadline = time.time() + 5
    while any(map(_alive, workers)) and time.time() < deadline:
        time.sleep(0.1)
    assert not [p for p in workers if _alive(p)], f"workers outlived the driver killed in {stage}"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_kill_9_of_driver_leaves_no_worker_and_rerun_equals_uninterrupted(tmp_path):
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump(CFG))
    out, hooks = tmp_path / "run", tmp_path / "hooks"
    hooks.mkdir()
    _kill_driver_mid("gan", cfg, out, hooks)
    _kill_driver_mid("cell", cfg, out, hooks)  # GANs trained for real this time, cells hang
    assert not list((out / "cells").glob("*.json"))
    run_mod.run_pipeline(cfg, out=out, report=False)  # the dead driver's lock is free: taken over
    # the uninterrupted run, in this process (one thread, as in a worker: the same floats)
    ref_cfg = tmp_path / "ref.yaml"
    ref_cfg.write_text(yaml.safe_dump({**CFG, "workers": 1}))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        reference = run_mod.run_pipeline(ref_cfg, out=tmp_path / "reference", report=False)
    finally:
        torch.set_num_threads(threads)

    def uars(run):
        return {p.name: json.loads(p.read_text())["test_uar"] for p in (run / "cells").glob("*.json")}

    assert len(uars(out)) == 3 and uars(out) == uars(reference)


def test_a_run_directory_in_use_is_refused_and_a_dead_holders_lock_is_free(tmp_path):
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump(TINY))
    with run_lock(tmp_path / "run", "a pipeline"):
        with pytest.raises(UserError, match=f"in use by a pipeline \\(pid {os.getpid()}\\)"):
            run_mod.run_pipeline(cfg, out=tmp_path / "run")
    # a holder killed by SIGKILL: its lock goes with it
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from s3prl_dd.runlock import run_lock\n"
                               f"with run_lock({str(tmp_path / 'run2')!r}):\n print('held', flush=True); time.sleep(60)"],
                              stdout=subprocess.PIPE)
    assert holder.stdout.readline().strip() == b"held"
    with pytest.raises(UserError, match=f"pid {holder.pid}"):
        with run_lock(tmp_path / "run2"):
            pass
    holder.kill()
    holder.wait()
    with run_lock(tmp_path / "run2") as lock:
        assert json.loads(lock.read_text())["pid"] == os.getpid()


def test_a_worker_whose_driver_is_already_gone_ends_itself():
    # init_worker with a parent pid that is not this process's parent: the driver died before
    # the death signal was armed, which the kernel would never report
    child = subprocess.run([sys.executable, "-c", "from s3prl_dd.workers import init_worker\n"
                            "init_worker(1, None)\nprint('survived')"], capture_output=True, timeout=60)
    assert child.returncode == -signal.SIGKILL and b"survived" not in child.stdout
