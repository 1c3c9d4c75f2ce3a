"""``-u ser_probe -k <SER checkpoint>``: the first layer of a trained SER model as an upstream.

For the paper's privacy probe (Section 5.3, Table 4): s3prl's SID recipe (``-d voxceleb1``)
trains on the 256-d output of the SER model's projector, applied to the representation of the
upstream that SER model was trained on. ``-k`` is an s3prl-dd ER checkpoint (``er-<step>.pt``)
or an s3prl runner checkpoint (``dev-best.ckpt`` of ``-d emotion_distilled``); which one is
detected from the file (see ``s3prl_dd.probe.ser``). Everything is frozen: no parameter
requires grad, the module stays in eval mode even under ``-f``, and the forward pass runs
without autograd.

The checkpoint says in which input space (raw or standardised, with its statistics) the SER
model was trained, and exactly that is applied. ``-g`` (optional) is a YAML file with
``upstream`` (an s3prl.hub name) to override the upstream the checkpoint records."""
from __future__ import annotations

import torch
import torch.nn as nn

from ..features.upstream import load_upstream, select
from ..probe.ser import SERProjector, load_ser_projector
from ..utils import UserError, load_yaml


def _probe_options(model_config) -> dict:
    if not model_config or str(model_config).lower() == "none":
        return {}
    opts = load_yaml(model_config)
    unknown = set(opts) - {"upstream"}
    if unknown:
        raise UserError(f"-g {model_config}: unknown keys {sorted(unknown)} (upstream; the input space "
                        "comes from the checkpoint)")
    return opts


class SERProbeUpstream(nn.Module):
    def __init__(self, ckpt: str, model_config: str | None = None, real_upstream: nn.Module | None = None,
                 projector: SERProjector | None = None):
        super().__init__()
        if projector is None:
            if not ckpt:
                raise UserError("-u ser_probe needs the SER model: -k path/to/er-<step>.pt or dev-best.ckpt")
            opts = _probe_options(model_config)
            projector = load_ser_projector(ckpt, upstream=opts.get("upstream"))
        self.ser = projector
        if self.ser.representation is None:
            raise UserError(f"{ckpt}: the SER checkpoint does not record its representation")
        if real_upstream is None:
            if not self.ser.upstream:
                raise UserError(f"{ckpt}: the SER checkpoint does not name its upstream; "
                                "give it with -g (a YAML file with 'upstream: NAME')")
            real_upstream = load_upstream(self.ser.upstream)
        self.real = real_upstream
        self.downsample_rate = int(self.real.get_downsample_rates("hidden_states")) \
            if hasattr(self.real, "get_downsample_rates") else None
        self.requires_grad_(False)
        super().train(False)

    def train(self, mode: bool = True) -> "SERProbeUpstream":  # frozen: always eval
        return super().train(False)

    def get_downsample_rates(self, key: str = None) -> int:
        if self.downsample_rate is None:
            raise UserError(f"upstream {self.ser.upstream!r} gives no downsample rate")
        return self.downsample_rate

    def forward(self, wavs: list[torch.Tensor]) -> dict:
        with torch.no_grad():
            hidden = self.real(wavs)["hidden_states"]
            h = self.ser(select(list(hidden), self.ser.representation))
        return {"hidden_states": [h], "last_hidden_state": h}


def ser_probe(ckpt: str = None, model_config: str = None, refresh: bool = False, **kwargs) -> SERProbeUpstream:
    """s3prl hub entry: ``-u ser_probe -k er-<step>.pt | dev-best.ckpt [-g probe.yaml]``."""
    return SERProbeUpstream(ckpt, model_config)
