"""Which upstream, and which of its outputs: the representation a store holds.

A representation is a plain dict so it can live in meta.json and in checkpoints:
``{"kind": "hidden_state", "layer": k}`` (an index into s3prl's ``hidden_states``, -1 = last) or
``{"kind": "featurizer", "weights": [...], "normalize": bool}`` (the softmaxed layer weights of a
trained s3prl Featurizer, so the GAN and the downstream see what s3prl's runner fed its model)."""
from __future__ import annotations

import argparse
import os
from pathlib import Path

import torch
import torch.nn.functional as F

from ..utils import UserError


def load_upstream(name: str) -> torch.nn.Module:
    """``getattr(s3prl.hub, name)()``, with the compat shims installed first."""
    import s3prl_dd.compat

    s3prl_dd.compat.apply()
    import s3prl.hub as hub

    if not hasattr(hub, name):
        raise UserError(f"s3prl has no upstream '{name}' (see s3prl.hub.options())")
    return getattr(hub, name)()


def downsample_rate(upstream: torch.nn.Module, sample_len: int, n_frames: int) -> int:
    if hasattr(upstream, "get_downsample_rates"):
        return int(upstream.get_downsample_rates("hidden_states"))
    # s3prl's Featurizer falls back to the same estimate
    return round(sample_len / n_frames)


@torch.no_grad()
def frame_counter(upstream: torch.nn.Module, ds: int, device="cpu"):
    """``L -> frames the upstream gives an L-sample utterance on its own``, or None.

    In a padded batch the upstream returns max-length outputs; s3prl's Featurizer keeps
    ``round(L / ds)`` frames per item, which for frame-based front ends (kaldi fbank, wav2vec2's
    conv stack) is 1-2 frames more than the utterance has, i.e. padding (zeros for fbank) that
    depends on which utterances share the batch. Front ends of this kind give
    ``floor((L - r) / ds) + 1`` frames; ``r`` is found by bisection on the one length in
    ``(L0 - ds, L0]`` where the count steps, then checked on other lengths. An upstream that does
    not fit gets None, and the caller falls back to s3prl's rule."""
    gen = torch.Generator().manual_seed(0)

    def frames(n: int) -> int:
        wav = (0.01 * torch.randn(n, generator=gen)).to(device)
        return upstream([wav])["hidden_states"][-1].shape[1]

    top = 16000
    t_top = frames(top)
    lo, hi = top - ds, top  # frames(lo) < t_top <= frames(hi), if the model fits
    if frames(lo) != t_top - 1:
        return None
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if frames(mid) == t_top else (mid, hi)
    r = hi - (t_top - 1) * ds

    def count(n: int) -> int:
        return max(1, (n - r) // ds + 1)

    if any(frames(n) != count(n) for n in (12345, 16000 + ds // 3, 24017)):
        return None
    return count


def featurizer_representation(ckpt: str | os.PathLike) -> dict:
    """Representation from an s3prl runner checkpoint's 'Featurizer' state dict."""
    path = Path(ckpt)
    if not path.is_file():
        raise UserError(f"featurizer checkpoint not found: {path}")
    from ..checkpoints import safe_load

    # s3prl's runner pickles argparse.Namespace under 'Args': allow exactly that class
    state = safe_load(path, ("runner",), safe_globals=[argparse.Namespace])
    feat = state.get("Featurizer")
    if not isinstance(feat, dict) or "weights" not in feat:
        raise UserError(f"checkpoint {path} has no trained Featurizer weights "
                        "(was the upstream run with a single layer selected?)")
    args = state.get("Args")
    normalize = bool(getattr(args, "upstream_feature_normalize", False)) if args is not None else False
    weights = F.softmax(feat["weights"].float(), dim=-1).tolist()
    return {"kind": "featurizer", "weights": weights, "normalize": normalize}


def representation_from(layer: int | str | None = -1, featurizer: str | os.PathLike | None = None) -> dict:
    if featurizer is not None:
        return featurizer_representation(featurizer)
    if isinstance(layer, str) and layer.lstrip("-").isdigit():
        layer = int(layer)
    if not isinstance(layer, int):
        raise UserError(f"layer must be an integer hidden-state index, got {layer!r}")
    return {"kind": "hidden_state", "layer": layer}


def select(hidden_states: list[torch.Tensor], rep: dict) -> torch.Tensor:
    """(B, T, D) from s3prl's hidden_states, as s3prl's Featurizer computes it."""
    n = len(hidden_states)
    if rep["kind"] == "hidden_state":
        k = rep["layer"]
        if not -n <= k < n:
            raise UserError(f"layer {k} does not exist: the upstream has {n} hidden states")
        return hidden_states[k]
    w = torch.as_tensor(rep["weights"], dtype=torch.float32)
    if len(w) != n:
        raise UserError(f"featurizer weights have {len(w)} layers, the upstream has {n} hidden states")
    stacked = torch.stack(hidden_states, dim=0)
    if rep.get("normalize"):
        stacked = F.layer_norm(stacked, (stacked.shape[-1],))
    return (w.to(stacked.device, stacked.dtype).view(n, 1, 1, 1) * stacked).sum(0)


def random_hubert_base(seed: int = 0, workdir: str | os.PathLike | None = None) -> torch.nn.Module:
    """s3prl's HuBERT upstream (13 hidden states x 768, 320 samples/frame) with random weights,
    built offline: a fresh ``HubertModel`` with HuBERT Base's config (the dataclass defaults,
    label_rate 50, 504 k-means targets) is written as a "converted" checkpoint and loaded by
    s3prl's own ``UpstreamExpert``, so hooks and outputs are exactly those of ``hub.hubert``.
    For shape and speed tests only: random weights carry no information."""
    import tempfile

    import s3prl_dd.compat

    s3prl_dd.compat.apply()
    from dataclasses import asdict

    from s3prl.upstream.hubert.expert import UpstreamExpert
    from s3prl.upstream.hubert.hubert_model import HubertConfig, HubertModel, HubertPretrainingConfig

    torch.manual_seed(seed)
    cfg, task = HubertConfig(label_rate=50.0), HubertPretrainingConfig(label_rate=50.0)
    symbols = [[str(i) for i in range(504)]]
    model = HubertModel(cfg, task, symbols)
    state = {"task_cfg": asdict(task), "model_cfg": asdict(cfg), "model_weight": model.state_dict(),
             "dictionaries_symbols": symbols}
    with tempfile.TemporaryDirectory(dir=workdir) as d:
        path = os.path.join(d, "hubert_base_random.pt")
        torch.save(state, path)
        upstream = UpstreamExpert(path)
    return upstream.eval()
