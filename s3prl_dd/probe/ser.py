"""The first layer of a trained SER model, as a frozen speaker embedding (paper, Section 5.3).

``SERProjector`` maps RAW upstream features (the store's scale, or the Featurizer's output in
s3prl's runner) to the 256-d output of the SER model's ``projector``, applying first the
standardisation that model was trained with, so the probe sees exactly what the SER model's
second layer saw. It is affine, so it commutes with time-mean pooling: the projector of a
time-mean equals the time-mean of the projected frames (the within-corpus probe uses that).

Sources (``load_ser_projector``), detected from the object or the file's content:

- an s3prl-dd ER checkpoint ``er-<step>.pt`` (``{"state_dict", "meta"}``, ``er/model.py``).
  Its ``meta["input_space"]`` says whether the model was trained on raw or standardised
  features and with which statistics; exactly that is applied (a checkpoint that does not say
  is refused). Upstream and representation come from the meta.
- an s3prl runner checkpoint (``dev-best.ckpt`` of ``-d emotion_distilled``): ``Downstream``
  holds ``projector.weight/bias`` and ``input_space_standardized`` (0: the expert fed raw
  Featurizer output, the only space it trains in; a checkpoint without it is refused);
  the upstream is ``Args.upstream`` and the representation is the trained Featurizer's softmaxed
  layer weights, ``Args.upstream_layer_selection``, or the single hidden state. A model trained
  with ``-u synthetic -k generator.pt`` is probed on the generator's real upstream and
  representation (read from the generator export).
- an in-memory ``ERModel`` (``stats``: the statistics it was trained with, None = raw) or a
  teacher (``er.pool.Teacher``, own input space).
"""
from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from ..er.runner_ckpt import check_raw_inputs, checkpoint_kind, read_checkpoint, runner_representation
from ..utils import UserError



def _as_tensor(x) -> torch.Tensor | None:
    if x is None:
        return None
    return torch.as_tensor(np.asarray(x, dtype=np.float32))


class SERProjector(nn.Module):
    """``x -> projector((x - mean) / std)``, frozen: no parameter requires grad, it stays in eval
    mode whatever ``train()`` is asked, and its forward runs without autograd, so no gradient can
    reach the SER weights from a probe trained on top."""

    def __init__(self, projector: nn.Linear, mean=None, std=None, *, upstream: str | None = None,
                 representation: dict | None = None, info: dict | None = None):
        super().__init__()
        self.projector = nn.Linear(projector.in_features, projector.out_features)
        self.projector.load_state_dict({k: v.detach().clone().float().cpu() for k, v in projector.state_dict().items()})
        mean, std = _as_tensor(mean), _as_tensor(std)
        if (mean is None) != (std is None):
            raise UserError("SER standardisation needs both mean and std")
        for name, v in (("mean", mean), ("std", std)):
            if v is not None and v.shape != (self.in_dim,):
                raise UserError(f"SER standardisation {name} has shape {tuple(v.shape)}, the projector "
                                f"takes {self.in_dim}-dim features")
        self.register_buffer("mean", mean)
        self.register_buffer("std", std)
        self.upstream, self.representation = upstream, representation
        self.info = dict(info or {})
        self.requires_grad_(False)
        super().train(False)

    @property
    def in_dim(self) -> int:
        return self.projector.in_features

    @property
    def out_dim(self) -> int:
        return self.projector.out_features

    @property
    def standardizes(self) -> bool:
        return self.mean is not None

    def train(self, mode: bool = True) -> "SERProjector":  # frozen: always eval
        return super().train(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(..., in_dim) raw features -> (..., out_dim); no autograd graph."""
        if x.shape[-1] != self.in_dim:
            raise UserError(f"the SER projector takes {self.in_dim}-dim features, got {x.shape[-1]}-dim "
                            f"(upstream {self.upstream!r}, {self.representation})")
        with torch.no_grad():
            x = x.to(self.projector.weight.dtype)
            if self.mean is not None:
                x = (x - self.mean) / self.std
            return self.projector(x)

    def linear_map(self) -> torch.Tensor:
        """The (out, in) matrix applied to standardised features (W; the bias is irrelevant)."""
        return self.projector.weight.detach()

    def effective_rank(self) -> float:
        """exp(entropy of the normalised singular values) of W (Roy & Vetterli, 2007): how many
        directions of the input the layer passes at comparable gain. A 256-row layer on a
        240-dim input (fbank_no_cmvn) is injective whatever its training: it cannot remove
        linearly decodable speaker information, only change how easily a probe finds it."""
        s = torch.linalg.svdvals(self.linear_map().double())
        p = s / s.sum()
        p = p[p > 0]
        return float(math.exp(float(-(p * p.log()).sum())))


# ---------------------------------------------------------------------------- loading
def _er_projector(ckpt: dict, path: Path) -> SERProjector:
    from ..er.model import ERModel, input_stats

    meta = ckpt["meta"]
    stats = input_stats(meta, f"ER checkpoint {path}")
    model = ERModel(meta["dim"], meta["n_classes"], meta["modelrc"])
    model.load_state_dict(ckpt["state_dict"])
    info = {"source": "er", "path": str(path), "fold": meta.get("fold"), "step": meta.get("step"),
            "seed": meta.get("seed"), "input_space": "standardized" if stats is not None else "raw"}
    mean, std = stats if stats is not None else (None, None)
    return SERProjector(model.projector, mean, std, upstream=meta.get("upstream"),
                        representation=meta.get("representation"), info=info)


def _runner_projector(state: dict, path: Path, upstream_override: str | None) -> SERProjector:
    down = state["Downstream"]
    if "projector.weight" not in down:
        raise UserError(f"{path}: the runner checkpoint's Downstream has no projector.weight "
                        "(not an emotion / emotion_distilled expert?)")
    check_raw_inputs(down, path)
    w, b = down["projector.weight"].float(), down["projector.bias"].float()
    proj = nn.Linear(w.shape[1], w.shape[0])
    proj.load_state_dict({"weight": w, "bias": b})
    args = state["Args"]
    upstream = getattr(args, "upstream", None)
    rep = runner_representation(state)
    info = {"source": "runner", "path": str(path), "downstream": getattr(args, "downstream", None),
            "runner_upstream": upstream, "input_space": "raw"}
    if upstream == "synthetic":
        # -u synthetic serves one hidden state: the generator's representation of its real upstream
        gpath = getattr(args, "upstream_ckpt", None)
        if not gpath or not Path(gpath).is_file():
            if upstream_override is None:
                raise UserError(f"{path} was trained on GAN samples (-u synthetic -k {gpath}), and that "
                                "generator is not found; give the real upstream with -g 'upstream: NAME'")
        else:
            try:
                from ..checkpoints import safe_load

                g = safe_load(gpath, ("generator",))
                upstream, rep = g.get("upstream"), g["representation"]
            except Exception as e:
                raise UserError(f"{path}: cannot read its generator {gpath}: {e}") from None
            info["generator"] = str(gpath)
    if upstream_override:
        upstream = upstream_override
    return SERProjector(proj, None, None, upstream=upstream, representation=rep, info=info)


def _open_checkpoint(path: Path):
    if not path.is_file():
        raise UserError(f"SER checkpoint not found: {path}")
    import argparse

    from ..checkpoints import safe_load

    obj = safe_load(path, ("er", "runner"), safe_globals=[argparse.Namespace])
    return obj, checkpoint_kind(obj)


def checkpoint_upstream(path) -> str | None:
    """The upstream an SER checkpoint (either format) was trained on, without loading the model
    or its statistics; for a ``-u synthetic`` runner checkpoint, the generator's real upstream."""
    path = Path(path)
    obj, kind = _open_checkpoint(path)
    if kind == "er":
        return obj["meta"].get("upstream")
    if kind == "runner":
        return _runner_projector(obj, path, None).upstream
    raise UserError(f"{path} is neither an s3prl-dd ER checkpoint nor an s3prl runner checkpoint")


def load_ser_projector(source, stats=None, upstream: str | None = None) -> SERProjector:
    """A frozen :class:`SERProjector` from a checkpoint path, an ``ERModel`` or a teacher.

    Checkpoints and teachers carry their input space. ``stats`` is only for an in-memory
    ``ERModel``: the (mean, std) it was trained with (None: raw features); given with a
    checkpoint it is an error, as it could only disagree with what the checkpoint says.
    ``upstream`` overrides the upstream name the source records."""
    from ..er.model import ERModel

    if isinstance(source, SERProjector):
        return source
    if isinstance(source, ERModel):
        mean, std = stats if stats is not None else (None, None)
        return SERProjector(source.projector, mean, std, upstream=upstream,
                            info={"source": "model", "input_space": "standardized" if stats is not None else "raw"})
    if stats is not None:
        raise UserError("stats are given for a model that records its own input space")
    if isinstance(source, nn.Module) and isinstance(getattr(source, "model", None), ERModel) \
            and getattr(source, "mean", None) is not None:  # er.pool.Teacher
        return SERProjector(source.model.projector, source.mean, source.std, upstream=upstream,
                            info={"source": "teacher", "input_space": "teacher's"})
    if not isinstance(source, (str, os.PathLike)):
        raise UserError(f"cannot use {type(source).__name__} as an SER model (a checkpoint path, "
                        "ERModel or Teacher is expected)")
    path = Path(source)
    obj, kind = _open_checkpoint(path)
    if kind == "er":
        proj = _er_projector(obj, path)
        if upstream:
            proj.upstream = upstream
        return proj
    if kind == "runner":
        return _runner_projector(obj, path, upstream)
    raise UserError(f"{path} is neither an s3prl-dd ER checkpoint (er-<step>.pt) nor an s3prl runner "
                    "checkpoint (dev-best.ckpt)")
