"""GAN training throughput (generator steps/s) and sampling throughput (samples/s), measured
through the real trainer (``s3prl_dd.gan.trainer.GANTrainer``: n_critic critic updates with GP +
one generator update with every Eq. 8 term, a teacher drawn from a pool each step) and the real
sampler (``s3prl_dd.gan.sampler.generate_class`` on a loaded ``generator.pt``).

Data: a random feature store of the config's dimension (utterances of 200 frames, like EmoDB's
2 s clips; 768-dim for the paper configs), in a temporary directory, and a small teacher pool
trained on it, so the numbers are those of a run minus the quick evaluation.

    python benchmarks/gan_throughput.py [--configs a.yaml ...] [--device cpu|cuda] [--threads 1]
        [--steps 20] [--paper-steps 1] [--paper-batch 2] [--bf16] [--out benchmarks/results/gan_throughput.json]

Default configs: every ``downstream_configs/gan/*_cpu.yaml`` for ``--steps`` steps, every
``*_paper.yaml`` for ``--paper-steps`` (they are GPU-sized; on a CPU a step takes seconds).
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from s3prl_dd.er.pool import TeacherPool, build_pool  # noqa: E402
from s3prl_dd.errors import run_main  # noqa: E402
from s3prl_dd.er.train import er_config  # noqa: E402
from s3prl_dd.features.store import make_meta, write_store  # noqa: E402
from s3prl_dd.gan import checkpoint as ck  # noqa: E402
from s3prl_dd.gan.models import count_parameters  # noqa: E402
from s3prl_dd.gan.sampler import generate_class  # noqa: E402
from s3prl_dd.gan.config import resolve_config  # noqa: E402
from s3prl_dd.gan.trainer import GANTrainer  # noqa: E402
from s3prl_dd.protocol import LABELS  # noqa: E402

REP = {"kind": "hidden_state", "layer": -1}


def random_store(path: Path, dim: int, per_session: int = 24, frames: int = 200):
    rng = np.random.default_rng(0)
    labels, items, sessions = list(LABELS), [], {}
    for s in range(1, 6):
        for k in range(per_session):
            uid = f"s{s}/u{k}"
            items.append({"id": uid, "label": labels[k % 4], "session": s, "speaker": f"spk{s}",
                          "features": rng.standard_normal((frames, dim), dtype=np.float32)})
            sessions.setdefault(s, []).append(uid)
    folds = {f"fold{s}": {"train": [i for t, v in sessions.items() if t != s for i in v], "test": sessions[s]}
             for s in sessions}
    return write_store(path, items, make_meta("random", REP, dim, downsample_rate=320), folds)


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def measure(cfg_path: str, steps: int, device: torch.device, bf16: bool, tmp: Path, stores: dict,
            batch: int | None = None) -> dict:
    cfg = resolve_config(cfg_path, "train.eval_every=0" + (f",,optim.batch_size={batch}" if batch else ""))
    cfg["train"]["bf16"] = bf16
    dim = int(cfg["model"]["D"])
    if dim not in stores:
        store = random_store(tmp / f"store{dim}", dim)
        pool_cfg = er_config(profile="fast", overrides="runner.total_steps=20,,runner.eval_step=10,,"
                                                       "pool.seeds=[0],,pool.checkpoints_per_seed=3,,pool.first_step=5")
        stores[dim] = (store, build_pool(store, "fold1", pool_cfg, tmp / f"pool{dim}", device="cpu", progress=False))
    store, pool_dir = stores[dim]
    pool = TeacherPool.load(pool_dir, device=device) if cfg["loss"].get("lambda_sml") else None
    t = GANTrainer(cfg, store, "fold1", pool, device)
    t.check_finite(t.train_step())  # warm-up (allocator, oneDNN/cuDNN kernel choice)
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(steps):
        terms = t.train_step()
    t.check_finite(terms)
    _sync(device)
    train_s = time.perf_counter() - t0

    t.export(tmp / "g.pt")
    g = ck.load_generator(tmp / "g.pt", device)
    n = 1024 if device.type == "cuda" or dim < 768 else 64
    generate_class(g, 0, min(n, 64), seed=1)
    _sync(device)
    t0 = time.perf_counter()
    generate_class(g, 0, n, seed=0)
    _sync(device)
    sample_s = time.perf_counter() - t0
    m = cfg["model"]
    return {"config": os.path.relpath(cfg_path, ROOT), "arch": m["arch"], "T": m.get("T", 1), "D": dim,
            "batch_size": cfg["optim"]["batch_size"], "n_critic": cfg["optim"]["n_critic"],
            "lambdas": {k: v for k, v in cfg["loss"].items() if k.startswith("lambda")},
            "g_params": count_parameters(t.G), "d_params": count_parameters(t.D), "bf16": t.bf16,
            "steps_timed": steps, "train_steps_per_s": steps / train_s, "seconds_per_step": train_s / steps,
            "samples_timed": n, "samples_per_s": n / sample_s}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--configs", nargs="*")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--paper-steps", type=int, default=1)
    p.add_argument("--paper-batch", type=int, help="batch for the paper configs (default: theirs on "
                   "CUDA, 2 on a CPU, where batch 64 at 256 x 768 needs tens of GB and minutes a step)")
    p.add_argument("--bf16", action="store_true", help="bf16 autocast (CUDA only)")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "gan_throughput.json"))
    p.add_argument("--append", action="store_true", help="replace only these configs' rows in an existing --out")
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    device = torch.device(a.device)
    configs = a.configs or sorted(glob.glob(str(ROOT / "downstream_configs" / "gan" / "*_cpu.yaml"))) + \
        sorted(glob.glob(str(ROOT / "downstream_configs" / "gan" / "*_paper.yaml")))
    results, stores = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        for c in configs:
            paper = c.endswith("_paper.yaml")
            batch = (a.paper_batch or (2 if device.type == "cpu" else None)) if paper else None
            r = measure(c, a.paper_steps if paper else a.steps, device, a.bf16, Path(tmp), stores, batch)
            results.append(r)
            print(f"{r['config']:45s} {r['arch']:8s} T={r['T']:<4} D={r['D']:<4} "
                  f"{r['train_steps_per_s']:8.3f} steps/s  {r['samples_per_s']:10.1f} samples/s", flush=True)
    dev = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({a.threads} thread(s), {platform.processor() or platform.machine()})"
    if a.append and Path(a.out).is_file():
        old = json.loads(Path(a.out).read_text())
        if old.get("device") != dev:
            raise SystemExit(f"--append: {a.out} was measured on {old.get('device')}, not {dev}")
        new = {r["config"] for r in results}
        results = [r for r in old["results"] if r["config"] not in new] + results
    out = {"device": dev, "torch": torch.__version__, "note": "steps/s = generator steps (each with n_critic "
           "critic updates) through GANTrainer.train_step on random data of the config's shape; "
           "samples/s = generate_class on a loaded generator.pt", "results": results}
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {a.out}")


if __name__ == "__main__":
    run_main(main)
