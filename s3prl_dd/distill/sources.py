"""One entry point for every training-set source, so the pipeline calls them uniformly:

    ts = make_training_set(source, store, fold, ppc, seed, generator=None, pool=None, cfg=None)

``source``: random | herding | kcenter (real subsets of the fold's train part), gan (i.i.d.
generator samples), gan_herding, gan_latent (frozen generator, chosen / learned latents), dm
(learned feature vectors, no GAN). ``generator``: a generator.pt path or a loaded
DistilledGenerator (GAN sources). ``pool``: a teacher pool directory or TeacherPool (optional:
gan_herding with space=pool, gan_latent's pool term). ``cfg``: options of that source, merged
over its defaults (= downstream_configs/distill/*.yaml); unknown keys are an error.
Returns a :class:`TrainingSet` in RAW upstream scale (``.to_erdata()`` feeds ``train_er``)."""
from __future__ import annotations

import os

from ..utils import UserError, apply_overrides
from .common import TrainingSet, load_source_config, merge
from .dm import DM_DEFAULTS, dm
from .herding import GAN_HERDING_DEFAULTS, GAN_IID_DEFAULTS, gan_herding, gan_iid
from .latent import LATENT_DEFAULTS, gan_latent
from .selection import real_subset

SOURCES = ("random", "herding", "kcenter", "gan", "gan_herding", "gan_latent", "dm")
NEEDS_GENERATOR = ("gan", "gan_herding", "gan_latent")
# which shipped config file (downstream_configs/distill/<file>.yaml) and section holds a source's options
CONFIG_FILES = {"gan": ("herding", "gan"), "gan_herding": ("herding", "gan_herding"), "gan_latent": ("latent", None),
                "dm": ("dm", None)}
DEFAULTS = {"gan": GAN_IID_DEFAULTS, "gan_herding": GAN_HERDING_DEFAULTS, "gan_latent": LATENT_DEFAULTS,
            "dm": DM_DEFAULTS}


def source_config(source: str, path=None, overrides=None) -> dict:
    """The resolved options of ``source``: its config file (or ``path``), then overrides."""
    if source not in CONFIG_FILES:
        if overrides:
            raise UserError(f"source '{source}' takes no options")
        return {}
    name, section = CONFIG_FILES[source]
    cfg = load_source_config(name, path)
    if section is not None:
        cfg = cfg.get(section, {})
    return apply_overrides(merge(DEFAULTS[source], cfg), overrides)

def _open_store(store):
    """A FeatureStore, or a path to one."""
    if isinstance(store, (str, os.PathLike)):
        from ..features.store import FeatureStore

        return FeatureStore.open(store)
    return store


COUNTED = ("random", "kcenter", "herding", "gan")  # sources that also take per-class counts


def make_training_set(source: str, store, fold, ppc: int | None, seed: int = 0, *, generator=None, pool=None,
                      cfg: dict | None = None, progress: bool = False, counts: dict | None = None) -> TrainingSet:
    """``ppc`` points of every class, or (for the sources in ``COUNTED``) ``counts``: class
    name -> n, for budgets that follow the real class prior."""
    if source not in SOURCES:
        raise UserError(f"unknown source '{source}'; choose one of {', '.join(SOURCES)}")
    if counts is not None:
        if source not in COUNTED:
            raise UserError(f"source '{source}' is built per class (ppc); per-class counts are for {COUNTED}")
        if ppc is not None:
            raise UserError("give either ppc or counts")
    elif ppc is None or int(ppc) < 1:
        raise UserError(f"ppc must be >= 1, got {ppc}")
    if source in NEEDS_GENERATOR and generator is None:
        raise UserError(f"source '{source}' needs a generator (generator.pt of a distill run)")
    if cfg and source not in DEFAULTS:
        raise UserError(f"source '{source}' takes no options, got {sorted(cfg)}")
    ppc, seed = (int(ppc) if ppc is not None else None), int(seed)
    store = _open_store(store)
    if source in ("random", "herding", "kcenter"):
        return real_subset(store, fold, ppc, seed, source, counts)
    if source == "gan":
        return gan_iid(store, fold, ppc, seed, generator, counts=counts, cfg=cfg)
    if source == "gan_herding":
        return gan_herding(store, fold, ppc, seed, generator, pool, cfg)
    if source == "gan_latent":
        return gan_latent(store, fold, ppc, seed, generator, pool, cfg, progress=progress)
    return dm(store, fold, ppc, seed, cfg, progress=progress)


def distill_set(store, fold, source: str, ppc: int, seed: int, out, *, generator=None, pool=None,
                config=None, overrides=None, device=None, progress: bool = True) -> dict:
    """``s3prl-dd distill-set``: build the set and write it as a feature store at ``out`` (raw
    scale, the real store's representation and label map), with the set's own artifact
    (``distill_set.pt``: latents for GAN sources, features otherwise) beside the shards."""
    from pathlib import Path

    store = _open_store(store)
    cfg = source_config(source, config, overrides)
    if device is not None and "device" in cfg:
        cfg["device"] = device
    ts = make_training_set(source, store, fold, ppc, seed, generator=generator, pool=pool,
                           cfg=cfg or None, progress=progress)
    extra = {"ppc": int(ppc), "seed": int(seed), "artifact": "distill_set.pt",
             "real_store": str(Path(store.path).resolve())}
    if isinstance(generator, (str, Path)):
        extra["generator"] = str(Path(generator).resolve())
    written = ts.to_store(out, store, fold, **extra)
    ts.save(Path(out) / "distill_set.pt")
    summary = {"store": str(written.path), "source": source, "n_items": len(written),
               "counts": written.meta["counts"], "artifact_bytes": ts.artifact_bytes}
    for key in ("short_classes", "objective_before", "objective_after"):
        if key in ts.info:
            summary[key] = ts.info[key]
    return summary
