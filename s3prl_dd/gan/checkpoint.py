"""GAN checkpoints (training state, resumable) and the generator export (the distilled dataset).

Training checkpoints ``ckpt-<step>.pt`` hold everything a resumed run needs; they are found by
scanning the run directory, so there is no "latest" pointer to get out of sync with the files.
The export ``generator.pt`` is what replaces the dataset: the generator, its model config, the
statistics that map its output back to raw upstream features, the label map, the real class
prior and the representation it was distilled from. Everything in both files is tensors or
plain Python types, so they load with ``torch.load(weights_only=True)``.
"""
from __future__ import annotations

import random
import re
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..checkpoints import not_a, safe_load
from ..utils import UserError, atomic_torch_save
from .models import build_gan

CKPT_VERSION = 1
EXPORT_FORMAT = "s3prl-dd-generator"
EXPORT_VERSION = 1
_CKPT_RE = re.compile(r"^ckpt-(\d+)\.pt$")


# ---------------------------------------------------------------------------- training checkpoints
def checkpoint_path(run_dir, step: int) -> Path:
    return Path(run_dir) / f"ckpt-{step}.pt"


def list_checkpoints(run_dir) -> list[tuple[int, Path]]:
    """(step, path) of every ``ckpt-<step>.pt`` in ``run_dir``, oldest first."""
    run_dir = Path(run_dir)
    found = []
    for p in run_dir.glob("ckpt-*.pt") if run_dir.is_dir() else []:
        m = _CKPT_RE.match(p.name)
        if m:
            found.append((int(m.group(1)), p))
    return sorted(found)


def latest_checkpoint(run_dir) -> Path | None:
    found = list_checkpoints(run_dir)
    return found[-1][1] if found else None


def rng_state() -> dict:
    """Global RNG states. Training draws come from per-step generators (realdata.step_generator)
    and need none of this; it is kept so that code relying on the global RNG after a resume
    (a user's hook, a future dropout) continues as it would have."""
    np_state = np.random.get_state()
    state = {"torch": torch.get_rng_state(), "python": list(random.getstate()[1]),
             "python_version": random.getstate()[0], "python_gauss": random.getstate()[2],
             "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]]}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate((state["python_version"], tuple(state["python"]), state["python_gauss"]))
    name, keys, *rest = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), *rest))
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(run_dir, step: int, state: dict, keep_last: int) -> Path:
    """Write ``ckpt-<step>.pt`` atomically, then delete all but the ``keep_last`` newest."""
    path = atomic_torch_save({"version": CKPT_VERSION, "step": step, **state}, checkpoint_path(run_dir, step))
    if keep_last > 0:
        for _, old in list_checkpoints(run_dir)[:-keep_last]:
            old.unlink(missing_ok=True)
    return path


def load_checkpoint(path) -> dict:
    ckpt = safe_load(path, ("gan_checkpoint",))
    if not isinstance(ckpt, dict) or ckpt.get("version") != CKPT_VERSION or "generator" not in ckpt:
        raise not_a(path, ("gan_checkpoint",), f"not version {CKPT_VERSION} with a generator state")
    return ckpt


# ---------------------------------------------------------------------------- generator export
def cpu_state(module: nn.Module) -> dict:
    return {k: v.detach().cpu().clone() for k, v in module.state_dict().items()}


def export_generator(path, generator: nn.Module, model_cfg: dict, mean, std, labels: dict,
                     class_counts: list[int], info: dict) -> Path:
    """Write the distilled-dataset artifact. ``mean``/``std`` map generator output back to raw
    upstream features; ``class_counts`` (of the real train part) give the prior sampling can
    follow; ``info`` carries representation, dim, upstream, downsample_rate, fold, step, score."""
    counts = [int(c) for c in class_counts]
    obj = {"format": EXPORT_FORMAT, "version": EXPORT_VERSION, "state_dict": cpu_state(generator),
           "model": dict(model_cfg), "mean": torch.as_tensor(mean, dtype=torch.float32).cpu().clone(),
           "std": torch.as_tensor(std, dtype=torch.float32).cpu().clone(), "labels": dict(labels),
           "class_counts": counts, "prior": [c / max(sum(counts), 1) for c in counts], **info}
    return atomic_torch_save(obj, path)


class DistilledGenerator(nn.Module):
    """A loaded ``generator.pt``: a conditional generator of RAW upstream features.

    ``sample(y)`` gives (B, T, D) in the store's scale (``standardized=True``: in GAN space);
    ``labels`` maps names to class ids, ``prior`` is the real train class distribution, ``info``
    the rest of the export's metadata."""

    def __init__(self, generator: nn.Module, mean: torch.Tensor, std: torch.Tensor, info: dict):
        super().__init__()
        self.generator = generator
        self.register_buffer("mean", mean)
        self.register_buffer("std", std)
        self.info = info
        self.labels: dict = info["labels"]
        self.prior: list[float] = info["prior"]
        self.T, self.D, self.noise_dim = generator.T, generator.D, generator.noise_dim

    def forward(self, y: torch.Tensor, e: torch.Tensor, standardized: bool = False) -> torch.Tensor:
        x = self.generator.generate(y, e)
        return x if standardized else x * self.std + self.mean


def load_generator(path, device="cpu") -> DistilledGenerator:
    """``generator.pt`` -> a ready DistilledGenerator in eval mode (BatchNorm uses its running
    statistics, so each sample depends on its own noise only, not on the batch it came in)."""
    obj = safe_load(path, ("generator",))
    if not isinstance(obj, dict) or obj.get("format") != EXPORT_FORMAT:
        raise not_a(path, ("generator",), "a GAN training checkpoint? use the run's generator.pt or best.pt"
                    if isinstance(obj, dict) and "generator" in obj else "")
    if obj.get("version") != EXPORT_VERSION:
        raise UserError(f"{path}: generator export version {obj.get('version')}, this code reads {EXPORT_VERSION}")
    generator, _ = build_gan(obj["model"])
    generator.load_state_dict(obj["state_dict"])
    info = {k: v for k, v in obj.items() if k not in ("state_dict", "mean", "std")}
    return DistilledGenerator(generator, obj["mean"], obj["std"], info).to(device).eval().requires_grad_(False)
