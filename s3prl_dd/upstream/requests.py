"""Synthetic-sample requests: how a GAN sample travels through s3prl's runner as a "wav".

s3prl's runner always runs ``upstream(wavs)`` then the Featurizer, which keeps
``round(len(wav) / downsample_rate)`` frames per item. A training item of a synthetic dataset
is therefore a float vector of ``length * downsample_rate`` samples whose head encodes which
sample to generate; the ``synthetic`` upstream decodes it and returns that many frames."""
from __future__ import annotations

import numpy as np

MAGIC = -31337.0  # impossible as an audio sample (|x| <= 1), so real audio is never mistaken
FIELDS = ("label", "index", "class_total", "seed", "length")


def encode(label: int, index: int, class_total: int, seed: int, length: int, downsample_rate: int) -> np.ndarray:
    wav = np.zeros(max(length * downsample_rate, len(FIELDS) + 1), dtype=np.float32)
    wav[0] = MAGIC
    wav[1: 1 + len(FIELDS)] = (label, index, class_total, seed, length)
    return wav


def decode(wav) -> dict | None:
    """The request's fields, or None for real audio."""
    if len(wav) <= len(FIELDS) or float(wav[0]) != MAGIC:
        return None
    return {k: int(v) for k, v in zip(FIELDS, wav[1: 1 + len(FIELDS)].tolist())}


# ---------------------------------------------------------------------------- store items
# A second request kind for ``-u cached``: "serve row ``index`` of the feature store". It has its
# own magic value, so ``decode`` above (GAN requests) never mistakes one for the other, and the
# same length rule: ``length * downsample_rate`` samples make the Featurizer keep ``length`` frames.
# Fields travel as float32, exact for integers below 2**24 (16.7M utterances, frames).
STORE_MAGIC = -31338.0
STORE_FIELDS = ("index", "length")


def encode_item(index: int, length: int, downsample_rate: int) -> np.ndarray:
    wav = np.zeros(max(length * downsample_rate, len(STORE_FIELDS) + 1), dtype=np.float32)
    wav[0] = STORE_MAGIC
    wav[1: 1 + len(STORE_FIELDS)] = (index, length)
    return wav


def decode_item(wav) -> dict | None:
    """The store-item request's fields, or None for anything else (audio, GAN requests)."""
    if len(wav) <= len(STORE_FIELDS) or float(wav[0]) != STORE_MAGIC:
        return None
    return {k: int(v) for k, v in zip(STORE_FIELDS, wav[1: 1 + len(STORE_FIELDS)].tolist())}


def store_rate(meta: dict) -> int:
    """Samples per frame that requests and the cached upstream agree on: the store's own rate,
    or 160 (10 ms) for stores that did not record one (any shared value keeps lengths exact)."""
    return int(meta.get("downsample_rate") or 160)
