"""Synthetic-sample requests: how a GAN sample travels through s3prl's runner as a "wav".

s3prl's runner always runs ``upstream(wavs)`` then the Featurizer, which keeps
``round(len(wav) / downsample_rate)`` frames per item. A training item of a synthetic dataset
is therefore a float vector of ``length * downsample_rate`` samples whose head encodes which
sample to generate; the ``synthetic`` upstream decodes it and returns that many frames."""
from __future__ import annotations

import numpy as np

MAGIC = -31337.0  # impossible as an audio sample (|x| <= 1), so real audio is never mistaken
FIELDS = ("label", "index", "class_total", "seed", "length")


def _pack(magic: float, values: tuple, length: int, downsample_rate: int) -> np.ndarray:
    wav = np.zeros(max(length * downsample_rate, len(values) + 1), dtype=np.float32)
    wav[0] = magic
    wav[1: 1 + len(values)] = values
    return wav


def _unpack(wav, magic: float, fields: tuple) -> dict | None:
    if len(wav) <= len(fields) or float(wav[0]) != magic:
        return None
    return {k: int(v) for k, v in zip(fields, wav[1: 1 + len(fields)].tolist())}


def encode(label: int, index: int, class_total: int, seed: int, length: int, downsample_rate: int) -> np.ndarray:
    return _pack(MAGIC, (label, index, class_total, seed, length), length, downsample_rate)


def decode(wav) -> dict | None:
    """The request's fields, or None for real audio."""
    return _unpack(wav, MAGIC, FIELDS)


# ---------------------------------------------------------------------------- store items
# A second request kind for ``-u cached``: "serve row ``index`` of the feature store". It has its
# own magic value, so ``decode`` above (GAN requests) never mistakes one for the other, and the
# same length rule: ``length * downsample_rate`` samples make the Featurizer keep ``length`` frames.
# Fields travel as float32, exact for integers below 2**24 (16.7M utterances, frames).
STORE_MAGIC = -31338.0
STORE_FIELDS = ("index", "length")


def encode_item(index: int, length: int, downsample_rate: int) -> np.ndarray:
    return _pack(STORE_MAGIC, (index, length), length, downsample_rate)


def decode_item(wav) -> dict | None:
    """The store-item request's fields, or None for anything else (audio, GAN requests)."""
    return _unpack(wav, STORE_MAGIC, STORE_FIELDS)


def store_rate(meta: dict) -> int:
    """Samples per frame that requests and the cached upstream agree on: the store's own rate,
    or 160 (10 ms) for stores that did not record one (any shared value keeps lengths exact)."""
    return int(meta.get("downsample_rate") or 160)
