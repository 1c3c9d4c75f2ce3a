"""The SUPERB ER downstream model, built from s3prl's own classes.

``projector`` (Linear dim -> projector_dim) then ``model`` = s3prl's ``UtteranceLevel`` (mean
pooling + linear post-net) or the emotion expert's ``DeepModel`` (CNN + self-attention pooling).
Attribute names match s3prl's emotion DownstreamExpert (``projector.*``, ``model.*``), so a state
dict moves between this class and s3prl's expert unchanged.

With MeanPooling and no pre-net, the projector (affine) and the mean over valid frames commute:
``post_net(projector(mean_t x)) == post_net(mean_t projector(x))``. ``forward_pooled`` uses that
to train on one time-mean per utterance, which is ~10x faster and gives the same model."""
from __future__ import annotations

import copy
import os

import numpy as np
import torch
import torch.nn as nn
from torch.nn.utils.rnn import pad_sequence

from ..utils import UserError, atomic_torch_save

# s3prl/downstream/emotion/config.yaml (s3prl 0.4.x), modelrc section
DEFAULT_MODELRC = {
    "projector_dim": 256,
    "select": "UtteranceLevel",
    "UtteranceLevel": {"pooling": "MeanPooling"},
    "DeepModel": {"model_type": "CNNSelfAttention", "hidden_dim": 80, "kernel_size": 5,
                  "padding": 2, "pooling": 5, "dropout": 0.4},
}
# 2: every checkpoint records its input space (raw or standardised, with which statistics)
CKPT_VERSION = 2


def _s3prl_classes():
    # the compat shims must be in place before any s3prl module is imported
    import s3prl_dd.compat

    s3prl_dd.compat.apply()
    from s3prl.downstream.emotion.model import DeepModel
    from s3prl.downstream.model import UtteranceLevel

    return {"UtteranceLevel": UtteranceLevel, "DeepModel": DeepModel}


def lengths_mask(lengths: torch.Tensor, t: int) -> torch.Tensor:
    return torch.arange(t, device=lengths.device)[None, :] < lengths[:, None]


def pad(features: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    lengths = torch.tensor([len(f) for f in features], dtype=torch.long, device=features[0].device)
    return pad_sequence(features, batch_first=True), lengths


class ERModel(nn.Module):
    def __init__(self, input_dim: int, n_classes: int = 4, modelrc: dict | None = None):
        super().__init__()
        rc = copy.deepcopy(modelrc or DEFAULT_MODELRC)
        classes = _s3prl_classes()
        if rc.get("select") not in classes:
            raise UserError(f"modelrc.select must be one of {list(classes)}, got {rc.get('select')!r}")
        conf = dict(rc.get(rc["select"], {}))
        # s3prl's emotion config.yaml lists DeepModel.input_dim, which the expert also passes
        # positionally (a TypeError in s3prl); the projector's width is the only right value
        conf.pop("input_dim", None)
        self.modelrc, self.input_dim, self.n_classes = rc, int(input_dim), int(n_classes)
        self.projector = nn.Linear(input_dim, rc["projector_dim"])
        self.model = classes[rc["select"]](input_dim=rc["projector_dim"], output_dim=n_classes, **conf)

    @property
    def supports_pooled(self) -> bool:
        """True when the model is a function of each utterance's time-mean only."""
        m = self.model
        return (self.modelrc["select"] == "UtteranceLevel" and getattr(m, "pre_net", None) is None
                and type(m.pooling).__name__ == "MeanPooling")

    def forward(self, features: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """(B, T, D) padded frames and (B,) valid lengths -> (B, n_classes) logits."""
        x = self.projector(features)
        logits, _ = self.model(x, lengths)
        return logits

    def forward_pooled(self, x: torch.Tensor) -> torch.Tensor:
        """(B, D) time-means -> logits; only for the linear (mean-pooling) model."""
        if not self.supports_pooled:
            raise UserError(f"forward_pooled needs UtteranceLevel + MeanPooling, not {self.modelrc['select']}")
        logits, _ = self.model.post_net(self.projector(x), None)
        return logits

    def embed(self, features: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """(B, T, projector_dim) projector output, zero beyond each length (the first layer of
        the SER model, used as a speaker probe's input)."""
        x = self.projector(features)
        return x * lengths_mask(lengths, x.shape[1]).unsqueeze(-1).to(x.dtype)


def input_space(stats=None) -> dict:
    """The space a model's inputs live in, as checkpoint metadata: raw upstream features, or
    ``(x - mean) / std`` with the given per-dimension statistics."""
    if stats is None:
        return {"standardized": False}
    mean, std = (np.asarray(s, dtype=np.float32).ravel() for s in stats)
    if mean.shape != std.shape:
        raise UserError(f"standardisation mean has {mean.size} dims, std {std.size}")
    return {"standardized": True, "mean": mean.tolist(), "std": std.tolist()}


def input_stats(meta: dict, where: str = "ER checkpoint"):
    """``(mean, std)`` float32 arrays the model's inputs were standardised with, or None for a
    model trained on raw features. A checkpoint that does not say is refused: guessing the
    space is how a probe ends up applying a layer to inputs it never saw."""
    space = meta.get("input_space")
    if not isinstance(space, dict) or "standardized" not in space:
        raise UserError(f"{where} does not record its input space (raw or standardised); it predates "
                        "s3prl-dd checkpoint version 2: retrain it")
    if not space["standardized"]:
        return None
    mean, std = np.asarray(space["mean"], np.float32), np.asarray(space["std"], np.float32)
    if mean.shape != (int(meta.get("dim", mean.size)),) or std.shape != mean.shape:
        raise UserError(f"{where}: input statistics of {mean.size} dims for a {meta.get('dim')}-dim model")
    return mean, std


def model_meta(model: ERModel, **extra) -> dict:
    """Plain-typed metadata, so checkpoints load with ``torch.load(weights_only=True)``."""
    return {"version": CKPT_VERSION, "dim": model.input_dim, "n_classes": model.n_classes,
            "modelrc": copy.deepcopy(model.modelrc), **extra}


def save_checkpoint(model: ERModel, path: str | os.PathLike, *, input_space: dict, **meta) -> None:
    """``input_space`` (see :func:`input_space`) is required: every consumer applies exactly it."""
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    atomic_torch_save({"state_dict": state, "meta": model_meta(model, input_space=input_space, **meta)}, path)


def load_checkpoint(path: str | os.PathLike, device: str | torch.device = "cpu") -> tuple[ERModel, dict]:
    from ..checkpoints import not_a, safe_load

    ckpt = safe_load(path, ("er",))
    if not isinstance(ckpt, dict) or "meta" not in ckpt or "state_dict" not in ckpt:
        raise not_a(path, ("er",))
    meta = ckpt["meta"]
    input_stats(meta, f"ER checkpoint {path}")
    model = ERModel(meta["dim"], meta["n_classes"], meta["modelrc"])
    model.load_state_dict(ckpt["state_dict"])
    return model.to(device), meta
