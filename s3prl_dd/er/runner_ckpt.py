"""s3prl runner checkpoints of ``-d emotion_distilled`` (``dev-best.ckpt``, ``states-*.ckpt``):
reading them safely and rebuilding what they hold as s3prl-dd objects.

A runner checkpoint keeps the expert's state under ``Downstream`` (``projector.*``, ``model.*``
and ``input_space_standardized``), the run's ``Args`` (an ``argparse.Namespace``: upstream,
layer selection) and ``Config`` (the downstream config, whose ``modelrc`` shapes the model).
It is how a user "consumes s3prl's SER expert directly": the SID probe reads its projector and
the teacher pool of L_SML reads the whole model."""
from __future__ import annotations

import argparse
from pathlib import Path

import torch

from ..utils import UserError

RUNNER_KEYS = ("Downstream", "Args")


def read_checkpoint(path: Path, kinds=("er", "runner")):
    """A safe (weights-only) load allowing exactly the ``argparse.Namespace`` the runner pickles;
    a file that is not loadable that way is one line naming what is accepted."""
    from ..checkpoints import safe_load

    return safe_load(path, kinds, safe_globals=(argparse.Namespace,))


def checkpoint_kind(obj) -> str:
    """'er' (s3prl-dd ER checkpoint), 'runner' (s3prl runner checkpoint) or 'unknown'."""
    if isinstance(obj, dict) and "state_dict" in obj and "meta" in obj:
        return "er"
    if isinstance(obj, dict) and all(k in obj for k in RUNNER_KEYS):
        return "runner"
    return "unknown"


def runner_representation(state: dict) -> dict:
    """What s3prl's Featurizer fed the downstream, as a store representation."""
    args = state.get("Args")
    get = (lambda k, d=None: getattr(args, k, d)) if args is not None else (lambda k, d=None: d)
    feat = state.get("Featurizer")
    if isinstance(feat, dict) and "weights" in feat:
        w = torch.softmax(feat["weights"].float(), dim=-1).tolist()
        return {"kind": "featurizer", "weights": w, "normalize": bool(get("upstream_feature_normalize", False))}
    layer = get("upstream_layer_selection")
    if isinstance(layer, int):
        return {"kind": "hidden_state", "layer": layer}
    selection = get("upstream_feature_selection", "hidden_states")
    if selection in ("hidden_states", "last_hidden_state", None):
        return {"kind": "hidden_state", "layer": -1}
    raise UserError(f"runner checkpoint used -s {selection}: only hidden_states / last_hidden_state "
                    "can be reproduced")


def check_raw_inputs(down: dict, path) -> None:
    """The expert records its input space; it only ever trains on raw Featurizer output."""
    if "input_space_standardized" not in down:
        raise UserError(f"{path}: the runner checkpoint does not record its input space (it predates "
                        "emotion_distilled's input_space_standardized); retrain it")
    if float(down["input_space_standardized"].flatten()[0]) != 0.0:
        raise UserError(f"{path}: a runner model trained on standardised inputs carries no statistics")


def runner_er_model(path) -> tuple:
    """(ERModel, info) from a runner checkpoint of ``-d emotion_distilled``: the whole SUPERB ER
    model (projector + UtteranceLevel / DeepModel), on raw features; ``info`` has its dim,
    upstream, representation and test fold."""
    from .model import ERModel

    path = Path(path)
    state = read_checkpoint(path, ("runner",))  # a missing or unsafe file: one line from safe_load
    if checkpoint_kind(state) != "runner":
        raise UserError(f"{path} is not an s3prl runner checkpoint (no Downstream/Args)")
    down = state["Downstream"]
    if "projector.weight" not in down:
        raise UserError(f"{path}: the runner checkpoint's Downstream has no projector.weight "
                        "(not an emotion / emotion_distilled expert?)")
    check_raw_inputs(down, path)
    config = state.get("Config") or {}
    expert = config.get("downstream_expert", {}) if isinstance(config, dict) else {}
    if "modelrc" not in expert:
        raise UserError(f"{path}: the runner checkpoint has no Config.downstream_expert.modelrc")
    weights = {k: v for k, v in down.items() if k.startswith(("projector.", "model."))}
    dim = int(down["projector.weight"].shape[1])
    model = ERModel(dim, _n_classes(weights), expert["modelrc"])
    model.load_state_dict(weights)
    args = state["Args"]
    fold = (expert.get("datarc") or {}).get("test_fold")
    return model.eval(), {"dim": dim, "upstream": getattr(args, "upstream", None),
                          "representation": runner_representation(state), "fold": fold, "path": str(path)}


def _n_classes(weights: dict) -> int:
    """Output width of the model: the last 2-d weight of ``model.*`` in state-dict order."""
    last = [v for k, v in weights.items() if k.startswith("model.") and v.dim() == 2][-1]
    return int(last.shape[0])
