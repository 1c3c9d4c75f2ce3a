"""What every distillation source shares: the :class:`TrainingSet` it returns, the fold's real
train part in the store's standardised space, generation from GAN latents (drawn as
``gan.sampler.class_noise`` draws them), and configs.

Spaces. Sources work in the store's standardised space (``(x - mean) / std`` with the fold's
TRAIN frame statistics, ``FeatureStore.stats(fold)``), where every dimension has unit scale, and
hand back RAW upstream-scale features, as a feature store holds them: the ER trainer standardises
with the same statistics, so the round trip is exact up to float rounding.
"""
from __future__ import annotations

import copy
import functools
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..features.store import make_meta, normalize_fold, write_store
from ..utils import UserError, apply_overrides, atomic_torch_save, config_path, load_yaml, merge_config

FORMAT = "s3prl-dd-distilled-set"
VERSION = 1
CONFIG_DIR = config_path("downstream_configs/distill")


# ---------------------------------------------------------------------------- the training set
@dataclass
class TrainingSet:
    """A training set for the SUPERB ER model from one source, in RAW upstream scale.

    ``features``: list of (T, D) float32 arrays (real utterances, GAN samples; T = 1 for GAN-MLP)
    or one (N, D) float32 array of time-means (DM's pooled sets). ``labels``: (N,) int64 class ids
    of the store's label map. ``artifact_bytes``: what must be kept to reproduce the set (real
    subsets and DM: the features; GAN sources: the generator file, plus the latents where they
    were chosen or learned). ``latents`` (N, noise_dim) and ``generator_path`` are set by the GAN
    sources: ``save`` then stores the latents only and ``load`` regenerates the features."""

    source: str
    features: list | np.ndarray
    labels: np.ndarray
    ids: list[str]
    artifact_bytes: int
    info: dict = field(default_factory=dict)
    latents: np.ndarray | None = None
    generator_path: str | None = None

    def __post_init__(self):
        self.labels = np.asarray(self.labels, dtype=np.int64).ravel()
        if len(self.features) != len(self.labels) or len(self.ids) != len(self.labels):
            raise UserError(f"{self.source}: {len(self.features)} features, {len(self.labels)} labels, "
                            f"{len(self.ids)} ids")

    def __len__(self) -> int:
        return len(self.labels)

    # Shape queries are ERData's (the trainer's view of the same set), not a second copy.
    @property
    def is_pooled(self) -> bool:
        return self.to_erdata().is_pooled

    @property
    def dim(self) -> int:
        return self.to_erdata().dim

    def counts(self, n_classes: int | None = None) -> list[int]:
        return np.bincount(self.labels, minlength=n_classes or 0).tolist()

    def pooled(self) -> np.ndarray:
        """(N, D) time-means (float64 accumulation, as the store's ``pooled``)."""
        return self.to_erdata().pooled()

    def to_erdata(self):
        """The set as ``er.data.ERData``, ready for ``train_er``."""
        from ..er.data import ERData

        return ERData(self.features, self.labels, list(self.ids))

    def frames(self) -> list[np.ndarray]:
        """Per-item (T, D) arrays; pooled sets give (1, D) items."""
        if self.is_pooled:
            return [np.asarray(row, np.float32)[None] for row in self.features]
        return [np.asarray(f, np.float32) for f in self.features]

    # -- persistence
    def save(self, path, features: bool | None = None) -> Path:
        """Write the set (loadable with ``torch.load(weights_only=True)``). A GAN set stores its
        latents and the generator's path + sha256 (not the features) unless ``features=True``."""
        keep_latents = self.latents is not None and self.generator_path is not None
        features = (not keep_latents) if features is None else features
        obj = {"format": FORMAT, "version": VERSION, "source": self.source,
               "labels": torch.from_numpy(self.labels), "ids": list(self.ids),
               "artifact_bytes": int(self.artifact_bytes), "info": json.loads(json.dumps(self.info))}
        if features:
            obj["features"] = (torch.from_numpy(np.asarray(self.features, np.float32)) if self.is_pooled
                               else [torch.from_numpy(np.array(f, np.float32)) for f in self.features])
        if self.latents is not None:
            obj["latents"] = torch.from_numpy(np.asarray(self.latents, np.float32))
        if self.generator_path is not None:
            obj["generator"] = str(Path(self.generator_path).resolve())
            obj["generator_sha256"] = file_sha256(self.generator_path)
        return atomic_torch_save(obj, path)

    @classmethod
    def load(cls, path, generator=None, device="cpu") -> "TrainingSet":
        """Read a saved set; a latent-only set is regenerated with ``generator`` (a path or a
        loaded DistilledGenerator; default: the path recorded at save time, checked by sha256)."""
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:
            raise UserError(f"cannot read distilled set {path}: {e}") from None
        if not isinstance(obj, dict) or obj.get("format") != FORMAT:
            raise UserError(f"{path} is not an s3prl-dd distilled set")
        labels = obj["labels"].numpy().astype(np.int64)
        latents = obj["latents"].numpy() if "latents" in obj else None
        if "features" in obj:
            f = obj["features"]
            features = f.numpy() if torch.is_tensor(f) else [t.numpy() for t in f]
        else:
            gpath = generator if generator is not None else obj.get("generator")
            if gpath is None or latents is None:
                raise UserError(f"{path} holds neither features nor latents + generator")
            if isinstance(gpath, (str, os.PathLike)):
                if generator is None and file_sha256(gpath) != obj.get("generator_sha256"):
                    raise UserError(f"{path}: the generator at {gpath} is not the one the latents were "
                                    "learned for (sha256 differs); pass the right one")
                from ..gan.checkpoint import load_generator

                g = load_generator(gpath, device)
            else:
                g = gpath
            features = generate_from_latents(g, labels, torch.from_numpy(latents))
        return cls(obj["source"], features, labels, obj["ids"], obj["artifact_bytes"], obj["info"],
                   latents, obj.get("generator"))

    def to_store(self, out, store, fold, **extra):
        """Write the set as a feature store (``write_store``), in the real ``store``'s space and
        format, so s3prl's expert and the pipeline read it as any store; returns it opened."""
        names = {v: k for k, v in store.label_map.items()}
        meta = make_meta(store.meta.get("upstream", "unknown"), store.representation, store.dim,
                         downsample_rate=store.meta.get("downsample_rate"), labels=store.label_map,
                         source=self.source, fold=normalize_fold(fold) if store.folds else str(fold),
                         counts={names[c]: n for c, n in enumerate(self.counts(len(names))) if n},
                         artifact_bytes=int(self.artifact_bytes), **extra)
        items = ({"id": i, "label": names[int(y)], "features": f}
                 for i, y, f in zip(self.ids, self.labels, self.frames()))
        return write_store(out, items, meta)


def file_sha256(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def features_nbytes(features) -> int:
    """float32 bytes of a feature list / array (what keeping it costs)."""
    if isinstance(features, (list, tuple)):
        return int(sum(4 * np.asarray(f).size for f in features))
    return int(4 * np.asarray(features).size)


# ---------------------------------------------------------------------------- the real fold
@dataclass
class FoldTrain:
    """The fold's TRAIN part (never dev or test) as standardised time-means."""

    indices: list[int]          # store positions
    x: torch.Tensor             # (N, D) standardised time-means
    y: torch.Tensor             # (N,) class ids
    mean: np.ndarray            # (D,) the fold's train frame statistics
    std: np.ndarray
    classes: list[int]          # class ids of the store's label map, sorted
    names: dict[int, str]       # id -> label name

    def of_class(self, c: int) -> list[int]:
        """Row numbers (into x / indices) of class c, in split order."""
        return list(self._rows.get(int(c), []))

    @functools.cached_property
    def _rows(self) -> dict[int, list[int]]:  # asked for every class at every distillation step
        return {int(c): torch.nonzero(self.y == int(c)).flatten().tolist() for c in torch.unique(self.y)}

    def standardize(self, raw) -> torch.Tensor:
        raw = torch.as_tensor(np.asarray(raw, np.float32))
        return (raw - torch.from_numpy(self.mean)) / torch.from_numpy(self.std)

    def destandardize(self, x: torch.Tensor) -> torch.Tensor:
        x = x.detach().float().cpu()
        return x * torch.from_numpy(self.std) + torch.from_numpy(self.mean)


def fold_train(store, fold) -> FoldTrain:
    idx = list(store.split(fold, "train"))
    if not idx:
        raise UserError(f"store {store.path}: {fold} has no train items")
    mean, std = store.stats(fold)
    raw = torch.from_numpy(store.pooled(idx))
    x = (raw - torch.from_numpy(mean)) / torch.from_numpy(std)
    label_map = store.label_map
    return FoldTrain(idx, x.float(), torch.from_numpy(store.labels(idx)), mean, std,
                     sorted(label_map.values()), {v: k for k, v in label_map.items()})


# ---------------------------------------------------------------------------- GAN latents
@torch.no_grad()
def generate_from_latents(g, labels: np.ndarray, latents: torch.Tensor, batch_size: int = 256) -> list[np.ndarray]:
    """Raw-scale (T, D) float32 arrays for (label, latent) pairs, one class at a time in the
    order given, in fixed batches: creation and ``TrainingSet.load`` both come through here,
    so a reloaded set is bitwise the set that was saved."""
    labels = np.asarray(labels, np.int64)
    out: list = [None] * len(labels)
    dev = g.mean.device
    for c in sorted(set(labels.tolist())):
        rows = np.nonzero(labels == c)[0]
        for s in range(0, len(rows), batch_size):
            r = rows[s: s + batch_size]
            e = latents[torch.from_numpy(r)].to(dev, torch.float32)
            y = torch.full((len(r),), int(c), dtype=torch.long, device=dev)
            x = g(y, e).float().cpu().numpy()
            for k, i in enumerate(r):
                out[i] = np.ascontiguousarray(x[k])
    return out


def generator_bytes(g, path=None) -> int:
    """Bytes of the generator artifact: the generator.pt file when known, else its state dict."""
    if path is not None and Path(path).is_file():
        return int(Path(path).stat().st_size)
    from ..gan.models import size_on_disk_bytes

    return int(size_on_disk_bytes(g))


def resolve_generator(generator, device="cpu"):
    """(DistilledGenerator, path or None) from a path or an already loaded generator."""
    if generator is None:
        raise UserError("this source needs a generator (--generator generator.pt)")
    if isinstance(generator, (str, os.PathLike)):
        from ..gan.checkpoint import load_generator

        return load_generator(generator, device), str(generator)
    return generator, None


def _same_fold(a, b) -> bool:
    try:
        return normalize_fold(str(a)) == normalize_fold(str(b))
    except UserError:
        return str(a) == str(b)


def resolve_pool(pool, store, fold=None, device="cpu"):
    """A TeacherPool from a directory (or as given); refuses a pool built on another fold, whose
    teachers have seen this fold's test speakers."""
    if pool is None:
        return None
    if isinstance(pool, (str, os.PathLike)):
        from ..er.pool import TeacherPool

        pool = TeacherPool.load(pool, expect_dim=store.dim, expect_representation=store.representation,
                                device=device)
    pf = pool.info.get("fold")
    if fold is not None and store.folds and pf is not None and not _same_fold(pf, fold):
        raise UserError(f"the teacher pool was built on {pf}, not {fold}: its teachers were trained "
                        f"on {fold}'s test speakers")
    return pool


def check_generator(g, store, fold=None) -> None:
    """The generator must make the store's representation and labels, and have been distilled
    from ``fold``'s train part (a generator of another fold has seen this fold's test data)."""
    from ..features.store import check_compatible

    info = dict(g.info, dim=g.D)
    if "representation" in info:
        # the upstream too: fbank and fbank_no_cmvn have the same dim and layer, not the same features
        check_compatible("generator", info, store.dim, store.representation,
                         store.meta.get("upstream") if info.get("upstream") else None)
    elif g.D != store.dim:
        raise UserError(f"generator makes {g.D}-dim features, the store holds {store.dim}-dim")
    if dict(g.labels) != dict(store.label_map):
        raise UserError(f"generator labels {g.labels} differ from the store's {store.label_map}")
    gf = g.info.get("fold")
    if fold is not None and store.folds and gf is not None and not _same_fold(gf, fold):
        raise UserError(f"the generator was distilled from {gf}, not {fold}: it has seen {fold}'s "
                        "test speakers")


# ---------------------------------------------------------------------------- configs
def load_source_config(name: str, path=None, overrides=None, defaults: dict | None = None) -> dict:
    """``downstream_configs/distill/<name>.yaml`` (or ``path``), then ``a.b=v,,c=w`` overrides.
    When the file is missing the built-in ``defaults`` are used (they equal the shipped file;
    a test keeps them equal)."""
    p = Path(path) if path is not None else CONFIG_DIR / f"{name}.yaml"
    cfg = load_yaml(p) if p.is_file() else copy.deepcopy(defaults or {})
    return apply_overrides(cfg, overrides)


def merge(defaults: dict, cfg: dict | None) -> dict:
    """Defaults updated by ``cfg``; unknown keys are an error naming them."""
    return merge_config(defaults, cfg, "distillation")
