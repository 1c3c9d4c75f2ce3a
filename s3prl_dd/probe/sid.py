"""SUPERB SID (s3prl's own ``-d voxceleb1`` recipe) on the SER probe upstream, and its results.

    python -m s3prl_dd.run_downstream -m train -u ser_probe -k er-<step>.pt -d voxceleb1 \\
        -c downstream_configs/sid_probe.yaml -n exp \\
        -o "config.downstream_expert.datarc.file_path='VOX1_ROOT',,config.downstream_expert.datarc.meta_data='VOX1_ROOT/iden_split.txt'"

``sid_argv`` builds that command, ``run_sid`` runs it and ``read_sid_log`` reads the expert's
``log.log`` (SUPERB protocol: test accuracy at the best dev step). ``voxceleb_layout`` makes a
small VoxCeleb1-layout corpus of synthetic speakers for demos and tests.

Note: s3prl's voxceleb1 expert has a 1251-way output (VoxCeleb1's speakers) whatever the corpus,
and labels a file by its speaker directory ``id1XXXX`` (label = XXXX + 10000 - 10001)."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path


from ..utils import UserError, config_path

SID_CONFIG = config_path("downstream_configs/sid_probe.yaml")


def voxceleb_layout(out_dir, n_speakers: int = 8, n_per_speaker: int = 6, seed: int = 0) -> dict:
    """A small built-in VoxCeleb1-layout corpus (``s3prl_dd.corpus.make_builtin_voxceleb``);
    returns ``{"file_path", "meta_data"}`` for the voxceleb1 expert's datarc. s3prl globs
    ``file_path/*/wav/<name>``, so ``file_path`` is the folder above the corpus."""
    from ..corpus import make_builtin_voxceleb

    out = Path(out_dir).resolve()
    info = make_builtin_voxceleb(out, n_speakers=n_speakers, utts_per_speaker=n_per_speaker, seed=seed)
    return {"file_path": info["s3prl_file_path"], "meta_data": str(out / "iden_split.txt")}


def sid_argv(upstream: str, expdir, file_path, meta_data, ckpt=None, config=SID_CONFIG, overrides: str | None = None,
             mode: str = "train", device: str | None = None) -> list[str]:
    """Arguments of ``python -m s3prl_dd.run_downstream`` for the SID recipe."""
    over = (f"config.downstream_expert.datarc.file_path='{file_path}',,"
            f"config.downstream_expert.datarc.meta_data='{meta_data}'")
    if overrides:
        over += ",," + overrides
    argv = ["-m", mode, "-u", upstream, "-d", "voxceleb1", "-c", str(config), "-p", str(expdir), "-o", over]
    if ckpt:
        argv += ["-k", str(ckpt)]
    if device:
        argv += ["--device", device]
    return argv


def read_sid_log(expdir) -> dict:
    """Accuracies from the voxceleb1 expert's ``log.log``: dev and test per evaluated step, the
    best dev step, and the test accuracy at that step (SUPERB's reported number)."""
    log = Path(expdir) / "log.log"
    if not log.is_file():
        raise UserError(f"{log} not found: did the SID run evaluate at least once?")
    acc = {"dev": {}, "test": {}}
    for line in log.read_text().splitlines():
        m = re.match(r"(dev|test) at step (\d+): ([0-9.eE+-]+)", line.strip())
        if m:
            acc[m.group(1)][int(m.group(2))] = float(m.group(3))
    if not acc["dev"]:
        return {"dev": acc["dev"], "test": acc["test"], "best_dev_step": None, "dev_acc": None, "test_acc": None}
    best = max(sorted(acc["dev"]), key=lambda s: acc["dev"][s])  # first step reaching the max, as the expert
    return {"dev": acc["dev"], "test": acc["test"], "best_dev_step": best, "dev_acc": acc["dev"][best],
            "test_acc": acc["test"].get(best)}


def run_sid(upstream: str, expdir, file_path, meta_data, ckpt=None, config=SID_CONFIG, overrides: str | None = None,
            device: str = "cpu", timeout: float | None = None, env: dict | None = None) -> dict:
    """Run the SID recipe in a subprocess (s3prl's runner owns its process: argv, seeds, exit)
    and return ``read_sid_log`` of its experiment directory."""
    argv = sid_argv(upstream, expdir, file_path, meta_data, ckpt, config, overrides, device=device)
    r = subprocess.run([sys.executable, "-m", "s3prl_dd.run_downstream", *argv], capture_output=True, text=True,
                       timeout=timeout, env={**os.environ, **(env or {})})
    if r.returncode != 0:
        tail = (r.stderr or r.stdout).strip().splitlines()[-5:]
        raise UserError(f"SID run ({upstream}) failed with exit code {r.returncode}: " + " | ".join(tail))
    return read_sid_log(expdir)
