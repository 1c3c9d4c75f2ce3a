"""``-u cached -k STORE_DIR``: s3prl's runner reads a feature store instead of running an upstream.

The emotion_distilled expert turns every utterance into a store-item request (see
``requests.py``); this upstream answers each with the utterance's stored frames, so the runner's
Featurizer and the expert see exactly what ``train_er_on_store`` trains on."""
from __future__ import annotations

import torch
import torch.nn as nn
from torch.nn.utils.rnn import pad_sequence

from ..features.store import FeatureStore
from ..utils import UserError
from .requests import decode_item, store_rate


class CachedUpstream(nn.Module):
    def __init__(self, store_dir: str):
        super().__init__()
        if not store_dir:
            raise UserError("-u cached needs the feature store: -k path/to/store")
        self.store = FeatureStore.open(store_dir)
        self.downsample_rate = store_rate(self.store.meta)
        self._probed = False

    def get_downsample_rates(self, key: str = None) -> int:
        return self.downsample_rate

    def _frames(self, wav: torch.Tensor) -> torch.Tensor:
        req = decode_item(wav)
        if req is None:
            # s3prl's Featurizer probes every upstream once with random noise to learn its
            # output shape; answer that with zeros of the store's dim. Any later real audio
            # means the dataset is not sending requests: fail instead of training on zeros.
            if self._probed:
                raise UserError("-u cached got audio instead of store-item requests; use it with "
                                "-d emotion_distilled (which sends requests for -u cached)")
            self._probed = True
            return torch.zeros(max(1, round(len(wav) / self.downsample_rate)), self.store.dim)
        if not 0 <= req["index"] < len(self.store):
            raise UserError(f"store-item request for index {req['index']}, store {self.store.path} has {len(self.store)}")
        x = torch.from_numpy(self.store.features(req["index"]).copy())
        if len(x) != req["length"]:
            raise UserError(f"store item {req['index']} has {len(x)} frames, the request says {req['length']}")
        return x

    def forward(self, wavs: list[torch.Tensor]) -> dict:
        device = wavs[0].device
        padded = pad_sequence([self._frames(w).to(device) for w in wavs], batch_first=True)
        return {"hidden_states": [padded], "last_hidden_state": padded}


def cached(ckpt: str = None, model_config: str = None, refresh: bool = False, **kwargs) -> CachedUpstream:
    """s3prl hub entry: ``-u cached -k STORE_DIR``."""
    return CachedUpstream(ckpt)
