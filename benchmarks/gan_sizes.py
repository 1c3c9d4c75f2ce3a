"""Sizes and step times of every GAN config in ``downstream_configs/gan``.

For each config: parameter counts and fp32 size on disk of the generator and discriminator, then
the wall time of one full training step on random inputs of the configured shape (768-dim for
the paper configs): ``n_critic`` critic updates (Eq. 4 with GP) and one generator update (Eq. 8
with every term, L_SML against a stand-in SUPERB ER teacher), at the config's batch size.

    python benchmarks/gan_sizes.py [--configs a.yaml ...] [--device cpu|cuda] [--threads 1]
        [--batch N] [--repeats 3] [--out benchmarks/results/gan_sizes.json]

``--batch`` overrides every config's batch (e.g. to time the paper configs on a CPU); with
``--append`` the results are merged into an existing ``--out`` (a record with the same config,
device and batch is replaced), so CPU and GPU runs can share one file.
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import platform
import sys
import time
from pathlib import Path

import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from s3prl_dd.gan import losses as L  # noqa: E402
from s3prl_dd.errors import run_main  # noqa: E402
from s3prl_dd.gan.models import build_gan, count_parameters, size_on_disk_bytes  # noqa: E402
from s3prl_dd.utils import atomic_write_json, load_yaml  # noqa: E402


class StandInTeacher(nn.Module):
    """The SUPERB ER model's shape (Linear -> time mean -> Linear), random weights: costs what
    a teacher from the pool Θ costs in the L_SML term."""

    def __init__(self, D: int, C: int, hidden: int = 256):
        super().__init__()
        self.proj, self.out = nn.Linear(D, hidden), nn.Linear(hidden, C)

    def forward(self, x):
        return self.out(self.proj(x).mean(1))


def train_step(G, D, teacher, opt_g, opt_d, real, y, loss_cfg, n_critic, gen):
    """One generator step as the trainer runs it: n_critic critic updates, one generator update."""
    for _ in range(n_critic):
        with torch.no_grad():
            fake = G(G.sample_noise(y, gen))
        # One discriminator call on [real; fake]: it has no batch coupling (GroupNorm, not
        # BatchNorm), so this equals two calls and halves the per-op overhead.
        critic, logits = D(torch.cat([real, fake]))
        (d_real, d_fake), (logits_real, logits_fake) = critic.chunk(2), logits.chunk(2)
        gp = L.gradient_penalty(lambda x: D(x)[0], real, fake, gen)
        loss_d, _ = L.critic_loss(
            L.critic_adversarial_loss(d_real, d_fake), gp,
            L.classification_loss(logits_real, y), L.classification_loss(logits_fake, y), loss_cfg)
        opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        opt_d.step()

    z1, z2 = G.sample_noise(y, gen), G.sample_noise(y, gen)
    fake1, fake2 = G(z1), G(z2)
    d_fake, logits_fake, feats_fake = D(fake1, return_features=True)
    with torch.no_grad():
        feats_real = D(real, return_features=True)[2]
        teacher_real = teacher(real)
    loss_g, _ = L.generator_loss(
        L.generator_adversarial_loss(d_fake), L.classification_loss(logits_fake, y),
        L.feature_matching_loss(feats_real, feats_fake), loss_cfg,
        div=L.diversity_loss(fake1, fake2, z1, z2, loss_cfg["tau"]),
        sml=L.softmax_matching_loss(teacher_real, teacher(fake1)))
    opt_g.zero_grad(set_to_none=True)
    loss_g.backward()
    opt_g.step()


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bench_config(path: str, device: torch.device, batch: int | None, repeats: int) -> dict:
    cfg = load_yaml(path)
    model, optim = cfg["model"], cfg["optim"]
    G, D = build_gan(model)
    record = {
        "config": os.path.relpath(path, ROOT),
        "arch": model["arch"],
        "T": G.T,
        "D": G.D,
        "generator_params": count_parameters(G),
        "discriminator_params": count_parameters(D),
        "generator_mb": size_on_disk_bytes(G) / 1e6,
        "discriminator_mb": size_on_disk_bytes(D) / 1e6,
    }
    record["total_mb"] = record["generator_mb"] + record["discriminator_mb"]
    G, D = G.to(device), D.to(device)
    teacher = StandInTeacher(G.D, G.num_classes).to(device)
    betas = tuple(optim["betas"])
    opt_g = torch.optim.Adam(G.parameters(), lr=optim["lr_g"], betas=betas)
    opt_d = torch.optim.Adam(D.parameters(), lr=optim["lr_d"], betas=betas)
    B = batch or optim["batch_size"]
    gen = torch.Generator(device=device).manual_seed(0)
    real = torch.randn(B, G.T, G.D, generator=gen, device=device)
    y = torch.randint(0, G.num_classes, (B,), generator=gen, device=device)
    step = lambda: train_step(G, D, teacher, opt_g, opt_d, real, y, cfg["loss"], optim["n_critic"], gen)  # noqa: E731

    step()  # warm-up: allocator, cuDNN autotuning, lazy inits
    _sync(device)
    times, cpu_times = [], []
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        step()
        _sync(device)
        times.append(time.perf_counter() - t0)
        cpu_times.append(time.process_time() - c0)
    # Wall time is what a user waits; process CPU time is what the step costs when the cores
    # are shared (on a busy machine wall time overstates it by the share other jobs take).
    record.update(batch_size=B, n_critic=optim["n_critic"], step_s=min(times), step_s_all=times,
                  step_cpu_s=min(cpu_times), steps_per_s=1.0 / min(times))
    return record


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    configs = sorted(glob.glob(str(ROOT / "downstream_configs/gan/*.yaml")))
    p.add_argument("--configs", nargs="*", default=configs)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--threads", type=int, default=1, help="CPU threads (torch.set_num_threads)")
    p.add_argument("--batch", type=int, default=None, help="override every config's batch size")
    p.add_argument("--repeats", type=int, default=3, help="timed steps after one warm-up; min is reported")
    p.add_argument("--out", default=str(ROOT / "benchmarks/results/gan_sizes.json"))
    p.add_argument("--append", action="store_true", help="merge into an existing --out")
    args = p.parse_args(argv)

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    device = torch.device(args.device)
    if device.type == "cuda":
        hardware = torch.cuda.get_device_name(device)
    else:
        hardware = f"{platform.processor() or platform.machine()}, {args.threads} thread(s)"
    results = []
    for path in args.configs:
        r = bench_config(path, device, args.batch, args.repeats)
        r.update(device=str(device), hardware=hardware, threads=args.threads)
        results.append(r)
        print(f"{r['config']:40s} T={r['T']:<4d} D={r['D']:<4d} "
              f"G {r['generator_params'] / 1e6:7.3f} M ({r['generator_mb']:7.2f} MB)  "
              f"D {r['discriminator_params'] / 1e6:6.3f} M ({r['discriminator_mb']:6.2f} MB)  "
              f"total {r['total_mb']:7.2f} MB  step(B={r['batch_size']}, n_critic={r['n_critic']}) "
              f"{r['step_s']:.3f} s (cpu {r['step_cpu_s']:.3f} s)", flush=True)
    if args.append and os.path.exists(args.out):
        key = lambda r: (r["config"], r["device"], r["batch_size"])  # noqa: E731
        new = {key(r) for r in results}
        with open(args.out) as f:
            results = [r for r in json.load(f)["results"] if key(r) not in new] + results
    atomic_write_json({"torch": torch.__version__, "results": results}, args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    run_main(main)
