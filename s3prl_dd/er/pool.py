"""The teacher pool Θ: SUPERB ER models trained on real features, kept at several training stages.

L_SML draws a teacher f_θ from Θ at every generator step; teachers from early to converged
training give a range of KL targets (the paper's motivation), and several seeds add diversity.

Layout of a pool directory::

    pool.json   {"fold", "upstream", "representation", "dim", "n_classes",
                 "checkpoints": [{"path": "seed0/er-20.pt", "seed", "step", "dev_acc", "dev_uar"}],
                 "config": {...}}
    seed0/      the training run of seed 0 (metrics.jsonl, tensorboard, config.yaml, er-*.pt)

Teachers take raw store features and apply the input space their checkpoint records (raw, or
standardised with the statistics it was trained with). Teachers train a fixed schedule (no
patience): the pool wants checkpoints from early to late training, not one stopping point."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from ..features.store import check_compatible
from ..utils import UserError, apply_overrides, atomic_write_json
from .model import input_stats, load_checkpoint
from .train import DEFAULT_CONFIG, er_config, train_er_on_store

DEFAULT_POOL = DEFAULT_CONFIG["pool"]


def checkpoint_steps(first: int, total: int, k: int, spacing: str = "log") -> list[int]:
    """``k`` distinct steps from ``first`` to ``total``: log-spaced (most change happens early)
    or linear."""
    if k < 1 or not 1 <= first <= total:
        raise UserError(f"need 1 <= first_step ({first}) <= total_steps ({total}) and k >= 1")
    if spacing == "log":
        steps = np.geomspace(first, total, k)
    elif spacing == "linear":
        steps = np.linspace(first, total, k)
    else:
        raise UserError(f"pool spacing must be 'log' or 'linear', got {spacing!r}")
    return sorted(set(int(round(s)) for s in steps))


class Teacher(nn.Module):
    """An ER model behind the input space it was trained in: ``(x - mean) / std``, with
    mean 0 and std 1 for a model trained on raw features (so the affine algebra of
    ``distill.embed`` / ``distill.latent`` needs no second case)."""

    def __init__(self, model: nn.Module, mean: torch.Tensor, std: torch.Tensor):
        super().__init__()
        self.model = model
        self.register_buffer("mean", mean)
        self.register_buffer("std", std)

    def forward(self, features, lengths):
        return self.model((features - self.mean) / self.std, lengths)

    def forward_pooled(self, x):
        return self.model.forward_pooled((x - self.mean) / self.std)


def build_pool(store, fold, cfg: dict | None = None, out_dir: str | os.PathLike = "pool",
               device=None, progress: bool = True) -> Path:
    """Train ``len(seeds)`` ER models on ``store``'s ``fold`` and keep ``checkpoints_per_seed``
    checkpoints of each. Resumes: a seed whose run finished (result.json) is not retrained."""
    cfg = cfg or er_config()
    # Fixed schedule, one input space: "auto" (a choice per run) becomes the raw space of s3prl's
    # runner, so every teacher of a pool sees its inputs the same way.
    cfg = apply_overrides(cfg, "runner.patience=None" + (",,datarc.standardize=False"
                                                         if cfg["datarc"].get("standardize") == "auto" else ""))
    pcfg = {**DEFAULT_POOL, **cfg.get("pool", {})}
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    steps = checkpoint_steps(int(pcfg["first_step"]), int(cfg["runner"]["total_steps"]),
                             int(pcfg["checkpoints_per_seed"]), pcfg["spacing"])
    entries = []
    for seed in pcfg["seeds"]:
        run = out / f"seed{seed}"
        if not (run / "result.json").is_file():
            if progress:
                print(f"[pool] training seed {seed} for {cfg['runner']['total_steps']} steps, keeping {steps}")
            train_er_on_store(store, fold, cfg, out_dir=run, seed=int(seed), device=device, save_steps=steps)
        for step in steps:
            path = run / f"er-{step}.pt"
            _, meta = load_checkpoint(path)
            entries.append({"path": str(path.relative_to(out)), "seed": int(seed), "step": step,
                            "dev_acc": meta.get("dev_acc"), "dev_uar": meta.get("dev_uar")})
    atomic_write_json({"fold": str(fold), "upstream": store.meta.get("upstream"),
                       "representation": store.representation, "dim": store.dim,
                       "n_classes": len(store.label_map), "checkpoints": entries, "config": cfg}, out / "pool.json")
    return out


class TeacherPool:
    def __init__(self, teachers: list[Teacher], info: dict, entries: list[dict]):
        self.teachers, self.info, self.entries = teachers, info, entries

    @classmethod
    def load(cls, path: str | os.PathLike, expect_dim: int | None = None,
             expect_representation: dict | None = None, device="cpu") -> "TeacherPool":
        """A pool directory of ``build_pool`` (pool.json), or s3prl's own SUPERB ER checkpoints:
        an experiment directory of ``-d emotion_distilled`` (its ``states-*.ckpt`` and
        ``dev-best.ckpt``) or comma-separated checkpoint files (see :meth:`from_runner`)."""
        text = str(path)
        if "," in text or text.endswith(".ckpt") or (Path(text).is_dir() and not (Path(text) / "pool.json").is_file()
                                                     and list(Path(text).glob("*.ckpt"))):
            files = ([Path(p.strip()) for p in text.split(",") if p.strip()] if not Path(text).is_dir()
                     else sorted(Path(text).glob("*.ckpt")))
            return cls.from_runner(files, expect_dim, expect_representation, device)
        path = Path(path)
        pfile = path / "pool.json"
        if not pfile.is_file():
            raise UserError(f"no teacher pool at {path} (pool.json missing); run build_pool first, "
                            "or give s3prl runner checkpoints (*.ckpt)")
        with open(pfile) as f:
            info = json.load(f)
        check_compatible(f"teacher pool {path}", info, expect_dim, expect_representation)
        if not info["checkpoints"]:
            raise UserError(f"teacher pool {path} lists no checkpoints")
        teachers = []
        for e in info["checkpoints"]:
            model, meta = load_checkpoint(path / e["path"])
            if int(meta["dim"]) != int(info["dim"]):
                raise UserError(f"{path / e['path']} is {meta['dim']}-dim, the pool says {info['dim']}")
            stats = input_stats(meta, f"teacher {path / e['path']}")
            dim = int(meta["dim"])
            mean, std = ((torch.zeros(dim), torch.ones(dim)) if stats is None
                         else (torch.from_numpy(stats[0]), torch.from_numpy(stats[1])))
            t = Teacher(model, mean, std).to(device).eval()
            t.requires_grad_(False)
            teachers.append(t)
        return cls(teachers, info, info["checkpoints"])

    @classmethod
    def from_runner(cls, files: list, expect_dim: int | None = None, expect_representation: dict | None = None,
                    device="cpu") -> "TeacherPool":
        """Teachers from SUPERB ER checkpoints of s3prl's runner (``-d emotion_distilled``, any
        step: ``states-*.ckpt`` from early to late training give L_SML its range of targets).
        They were trained on raw Featurizer output, which is what a feature store holds."""
        from .runner_ckpt import runner_er_model

        if not files:
            raise UserError("no runner checkpoints given for the teacher pool")
        teachers, entries, seen = [], [], {}
        for f in files:
            model, info = runner_er_model(f)
            for key in ("dim", "upstream", "representation", "fold"):
                if key in seen and seen[key] != info[key]:
                    raise UserError(f"runner checkpoints disagree on {key}: {seen[key]} vs {info[key]} ({f})")
                seen[key] = info[key]
            t = Teacher(model, torch.zeros(info["dim"]), torch.ones(info["dim"])).to(device).eval()
            t.requires_grad_(False)
            teachers.append(t)
            entries.append({"path": str(f), "step": None, "source": "runner"})
        pool_info = {**seen, "n_classes": teachers[0].model.n_classes, "checkpoints": entries, "source": "runner"}
        check_compatible(f"runner teacher pool ({files[0]}...)", pool_info, expect_dim, expect_representation)
        return cls(teachers, pool_info, entries)

    def __len__(self) -> int:
        return len(self.teachers)

    def __getitem__(self, i: int) -> Teacher:
        return self.teachers[i]

    @property
    def mean(self) -> torch.Tensor:
        return self.teachers[0].mean

    @property
    def std(self) -> torch.Tensor:
        return self.teachers[0].std

    def sample(self, generator: torch.Generator | None = None) -> Teacher:
        """One teacher, uniformly; pass a seeded generator for a reproducible sequence."""
        i = int(torch.randint(len(self.teachers), (1,), generator=generator).item())
        return self.teachers[i]

    def to(self, device) -> "TeacherPool":
        self.teachers = [t.to(device) for t in self.teachers]
        return self


def main(argv=None) -> None:
    """``python -m s3prl_dd.er.pool STORE --fold 1 --out pool/ [--profile fast] [-o pool.seeds=[0,1]]``"""
    import argparse

    from ..features.store import FeatureStore

    p = argparse.ArgumentParser(description="Build the teacher pool on a real feature store")
    p.add_argument("store")
    p.add_argument("--fold", default="1")
    p.add_argument("--out", required=True)
    p.add_argument("--config")
    p.add_argument("--profile")
    p.add_argument("-o", "--override")
    p.add_argument("--device")
    a = p.parse_args(argv)
    try:
        out = build_pool(FeatureStore.open(a.store), a.fold, er_config(a.config, a.profile, a.override),
                         a.out, device=a.device)
        pool = TeacherPool.load(out)
    except UserError as e:
        raise SystemExit(f"error: {e}")
    print(f"{out}: {len(pool)} teachers, dev UAR " + ", ".join(
        f"{e['step']}:{100 * e['dev_uar']:.1f}" for e in pool.entries if e["dev_uar"] is not None))


if __name__ == "__main__":
    main()
