"""What s3prl_dd adds to s3prl: downstream experts (``-d``) and upstreams (``-u``).

Downstreams are served as ``s3prl.downstream.<name>`` package aliases (see compat.hooks);
upstreams become attributes of ``s3prl.hub``. Entries are import paths, so registering costs
nothing until s3prl asks for one."""
from __future__ import annotations

import importlib
import importlib.util

DOWNSTREAMS = {
    "emotion_distilled": "s3prl_dd.downstream.emotion_distilled",
}

UPSTREAMS = {
    # name: "module:callable"
    "synthetic": "s3prl_dd.upstream.synthetic:synthetic",
    "ser_probe": "s3prl_dd.upstream.ser_probe:ser_probe",
    "cached": "s3prl_dd.upstream.cached:cached",  # -k FEATURE_STORE: serves stored features
    # pretrained encoders whose weights ship in package-index packages (setup.py's [pretrained])
    "ge2e": "s3prl_dd.upstream.ge2e:ge2e",  # Resemblyzer GE2E: 3 x 256 at 100 Hz
    "wakehubert": "s3prl_dd.upstream.wakehubert:wakehubert",  # WakeHuBERT-tiny: 8 x 256 at 50 Hz
    "wakehubert_proj": "s3prl_dd.upstream.wakehubert:wakehubert_proj",  # its 128-d output, 50 Hz
}


def _lazy_entry(name: str, target: str):
    module_name, attr = target.split(":")

    def entry(*args, **kwargs):
        return getattr(importlib.import_module(module_name), attr)(*args, **kwargs)

    entry.__name__ = name
    entry.__doc__ = f"s3prl_dd upstream '{name}' ({target})"
    return entry


def register_upstreams(hub) -> None:
    for name, target in UPSTREAMS.items():
        if not hasattr(hub, name):
            setattr(hub, name, _lazy_entry(name, target))
