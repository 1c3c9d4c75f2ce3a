"""Where a GAN generator step's time goes: ``GANTrainer.train_step`` split into phases.

    python benchmarks/gan_profile.py [--configs gan_mlp_cpu gan_att_cpu gan_att_ssl_cpu gan_cnn_cpu] [--dim 256]
        [--steps 10] [--threads 1] [--device cpu] [-o a.b=v,,c=w] [--out benchmarks/results/gan_profile.json]

Data as benchmarks/gan_throughput.py (its ``random_store``; ``model.D`` set to ``--dim``, 256 =
the GE2E store's) with a small teacher pool trained on it. The trainer runs unchanged: the
benchmark wraps its methods, its optimizers' ``zero_grad``/``step``, forward hooks on G, and
``losses.gradient_penalty`` / ``trainer.teacher_logits`` (patched for the timed steps only), so
the step computes bit for bit what an unprofiled one does (tests/test_benchmarks_gan.py checks).
Each region's time is exclusive of the regions inside it, so the phases sum to the step:

- real: real-batch fetch (``_real``: crop/tile, standardise), n_critic + 1 per step
- critic_fake: the critic steps' G forward for the fakes (no grad)
- critic_fwd: the rest of a critic step's forward: D on real+fake, the losses
- gp: the gradient penalty's D forward on the interpolates and its input gradient (create_graph);
  its double backward runs in the critic's backward, so it is part of critic_bwd
- critic_bwd: critic zero_grad + backward + Adam step
- g_fwd: the generator step's G forward (with grad; two noise draws when L_DIV is on)
- teacher: teacher forward passes for L_SML (real side under no_grad, fake side with grad)
- g_loss: the rest of the generator step's forward: D on the fakes (and on real for FM), the losses
- g_bwd: generator zero_grad + backward (through D and the teacher) + Adam step
- other: the rest of train_step: lr schedule, noise generator, teacher draw, EMA, logged terms

Wall clock (``time.perf_counter``; with ``--device cuda`` every boundary synchronises, which
costs some overlap). 2 warm-up steps are not timed.
"""
from __future__ import annotations

import argparse
import functools
import platform
import sys
import tempfile
import time
from collections import defaultdict
from contextlib import ExitStack
from pathlib import Path
from unittest import mock

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gan_throughput import ROOT, random_store  # noqa: E402

from s3prl_dd.er.pool import TeacherPool, build_pool  # noqa: E402
from s3prl_dd.errors import run_main  # noqa: E402
from s3prl_dd.er.train import er_config  # noqa: E402
from s3prl_dd.gan import losses  # noqa: E402
from s3prl_dd.gan import trainer as trainer_mod  # noqa: E402
from s3prl_dd.gan.config import resolve_config  # noqa: E402
from s3prl_dd.gan.models import count_parameters  # noqa: E402
from s3prl_dd.utils import UserError, atomic_write_json, config_path  # noqa: E402

PHASES = ("real", "critic_fake", "critic_fwd", "gp", "critic_bwd", "g_fwd", "teacher", "g_loss", "g_bwd", "other")
DEFAULT_CONFIGS = ("gan_mlp_cpu", "gan_att_cpu", "gan_att_ssl_cpu", "gan_cnn_cpu")
# A pool as gan_throughput.py's: the teachers' cost per forward does not depend on how long they trained.
POOL_OVERRIDES = ("runner.total_steps=20,,runner.eval_step=10,,"
                  "pool.seeds=[0],,pool.checkpoints_per_seed=3,,pool.first_step=5")


class PhaseTimer:
    """Exclusive wall time per region; regions nest, and a child's time is not its parent's."""

    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"
        self.stack: list[list] = []
        self.reset()

    def reset(self):
        self.seconds, self.calls = defaultdict(float), defaultdict(int)

    def _now(self) -> float:
        if self.cuda:
            torch.cuda.synchronize()
        return time.perf_counter()

    def push(self, name: str):
        self.stack.append([name, self._now(), 0.0])

    def pop(self) -> float:
        name, t0, inner = self.stack.pop()
        dt = self._now() - t0
        self.seconds[name] += dt - inner
        self.calls[name] += 1
        if self.stack:
            self.stack[-1][2] += dt
        return dt

    def parent(self) -> str | None:
        return self.stack[-1][0] if self.stack else None

    def wrap(self, fn, name: str):
        @functools.wraps(fn)
        def timed(*args, **kwargs):
            self.push(name)
            try:
                return fn(*args, **kwargs)
            finally:
                self.pop()
        return timed

    def wrap_optimizer(self, opt, name: str):
        """zero_grad opens the region, step closes it: backward runs in between (see critic_step)."""
        zero_grad, step = opt.zero_grad, opt.step

        def open_(*args, **kwargs):
            self.push(name)
            return zero_grad(*args, **kwargs)

        def close(*args, **kwargs):
            try:
                return step(*args, **kwargs)
            finally:
                self.pop()
        opt.zero_grad, opt.step = open_, close


def instrument(t: trainer_mod.GANTrainer, timer: PhaseTimer) -> ExitStack:
    """Time ``t``'s phases; the module-level patches last until the returned stack is closed."""
    t.train_step = timer.wrap(t.train_step, "other")
    t._real = timer.wrap(t._real, "real")
    t.critic_step = timer.wrap(t.critic_step, "critic_fwd")
    t.generator_step = timer.wrap(t.generator_step, "g_loss")
    timer.wrap_optimizer(t.opt_d, "critic_bwd")
    timer.wrap_optimizer(t.opt_g, "g_bwd")
    # G's forward is timed by hooks (t.g is what the steps call); whose it is depends on the caller.
    def g_done(module, inputs, output):
        timer.pop()  # and return None: a forward hook's return value would replace G's output

    t.G.register_forward_pre_hook(lambda m, x: timer.push("critic_fake" if timer.parent() == "critic_fwd" else "g_fwd"))
    t.G.register_forward_hook(g_done)
    patches = ExitStack()
    patches.enter_context(mock.patch.object(losses, "gradient_penalty", timer.wrap(losses.gradient_penalty, "gp")))
    patches.enter_context(mock.patch.object(trainer_mod, "teacher_logits",
                                            timer.wrap(trainer_mod.teacher_logits, "teacher")))
    return patches


def profile_trainer(t: trainer_mod.GANTrainer, steps: int, warmup: int = 2) -> dict:
    """``warmup`` untimed then ``steps`` timed ``train_step``s of ``t``; per-phase ms per step.
    ``t`` keeps its (harmless) instance wrappers and G hooks afterwards: profile a throwaway trainer."""
    timer = PhaseTimer(t.device)
    with instrument(t, timer):
        for i in range(warmup + steps):
            if i == warmup:
                timer.reset()
            terms = t.train_step()
        t.check_finite(terms)
    total = sum(timer.seconds.values())
    phases = {k: {"ms_per_step": 1e3 * timer.seconds[k] / steps, "pct": 100 * timer.seconds[k] / total,
                  "calls_per_step": timer.calls[k] / steps} for k in PHASES}
    return {"steps_timed": steps, "ms_per_step": 1e3 * total / steps, "steps_per_s": steps / total, "phases": phases}


def make_pool(store, work: Path) -> Path:
    cfg = er_config(profile="fast", overrides=POOL_OVERRIDES)
    return build_pool(store, "fold1", cfg, work / f"pool{store.dim}", device="cpu", progress=False)


def resolve(name: str) -> Path:
    """A config path, or the name of one in downstream_configs/gan/."""
    return config_path(name if name.endswith(".yaml") else f"gan/{name}.yaml")


def measure(cfg_file: Path, store, pool_dir, device, steps: int, overrides: str | None) -> dict:
    cfg = resolve_config(cfg_file, ",,".join(filter(None, ["train.eval_every=0", f"model.D={store.dim}", overrides])))
    pool = TeacherPool.load(pool_dir, device=device) if cfg["loss"].get("lambda_sml") else None
    t = trainer_mod.GANTrainer(cfg, store, "fold1", pool, device)
    m, o = cfg["model"], cfg["optim"]
    return {"config": cfg_file.stem, "arch": m["arch"], "T": m.get("T", 1), "D": store.dim,
            "batch_size": o["batch_size"], "n_critic": o["n_critic"],
            "lambdas": {k: v for k, v in cfg["loss"].items() if k.startswith("lambda")},
            "g_params": count_parameters(t.G), "d_params": count_parameters(t.D), **profile_trainer(t, steps)}


def print_table(r: dict) -> None:
    print(f"\n{r['config']} ({r['arch']}, T={r['T']}, D={r['D']}, batch {r['batch_size']}, n_critic {r['n_critic']}): "
          f"G {r['g_params'] / 1e6:.3f} M + D {r['d_params'] / 1e6:.3f} M params, "
          f"{r['ms_per_step']:.1f} ms/step = {r['steps_per_s']:.2f} steps/s")
    for k, v in r["phases"].items():
        print(f"  {k:12s} {v['ms_per_step']:9.2f} ms {v['pct']:6.1f} %  ({v['calls_per_step']:g} calls/step)")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--configs", nargs="*", default=list(DEFAULT_CONFIGS),
                   help="names in downstream_configs/gan/ or paths")
    p.add_argument("--dim", type=int, default=256, help="feature dim of the random store (model.D)")
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--device", default="cpu")
    p.add_argument("--frames", type=int, default=200, help="frames per random utterance (EmoDB's 2 s clips)")
    p.add_argument("--per-session", type=int, default=24, help="utterances per session of the random store")
    p.add_argument("-o", "--override", help="GAN config overrides a.b=v,,c=w (after model.D)")
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "gan_profile.json")
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    device = torch.device(a.device)
    results = []
    try:
        files = [resolve(c) for c in a.configs]
        with tempfile.TemporaryDirectory() as tmp:
            store = random_store(Path(tmp) / "store", a.dim, a.per_session, a.frames)
            pool_dir = make_pool(store, Path(tmp))
            for f in files:
                results.append(measure(f, store, pool_dir, device, a.steps, a.override))
                print_table(results[-1])
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    atomic_write_json({"dim": a.dim, "steps": a.steps, "warmup": 2, "override": a.override, "phases": list(PHASES),
                       "note": "ms per generator step (n_critic critic updates + 1 generator update) through "
                               "GANTrainer.train_step on random data; phases are exclusive and sum to the step "
                               "(see the module docstring; gp's double backward is in critic_bwd)",
                       "results": results,
                       "env": {"torch": torch.__version__, "threads": a.threads, "device": str(device),
                               "python": platform.python_version(),
                               "machine": platform.processor() or platform.machine()}}, a.out)
    print(f"\nwrote {a.out}")
    return 0


if __name__ == "__main__":
    run_main(main)
