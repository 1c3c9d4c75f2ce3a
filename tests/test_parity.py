"""Parity: s3prl's runner on ``-u cached`` and ``train_er_on_store`` train the same ER model.

Both start from one feature store of the built-in corpus (fold 1, seed 0, 40 steps, lr 1e-3,
batch 4 x accumulation 8, dev every 10 steps, best dev UAR, no standardisation: the runner
does not standardise). ``schedule="s3prl"`` makes train_er use the global torch RNG the way the
runner does (model init after the Featurizer's noise probe, one DataLoader(shuffle=True) per
epoch, re-seeded by every evaluation), so the two see the same init and the same batches and
the only difference left is float rounding (train_er's linear model trains on time-means).
Measured: identical best step, identical test predictions, weights within 2e-7. With the
default private-generator schedule the batches differ and test accuracy differed by one of the
12 test utterances (8.3 points) on this corpus, so the 1-point bound needs schedule="s3prl"."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from s3prl_dd.upstream.requests import decode, decode_item, encode, encode_item
from s3prl_dd.utils import UserError

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "downstream_configs" / "emotion_distilled.yaml"
STEPS, EVAL, LR, SEED = 40, 10, 1e-3, 0


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    from s3prl_dd.corpus import build_corpus
    from s3prl_dd.features.extract import extract

    d = tmp_path_factory.mktemp("parity")
    build_corpus({"type": "builtin", "n_per_speaker": 6, "seed": 0}, d / "corpus")
    extract(d / "corpus", d / "store", upstream="fbank_no_cmvn", progress=False)
    return d / "corpus", d / "store"


def test_store_item_requests_are_their_own_kind():
    item = encode_item(index=123, length=7, downsample_rate=160)
    assert len(item) == 7 * 160 and decode_item(item) == {"index": 123, "length": 7}
    assert decode(item) is None  # never taken for a GAN request ...
    assert decode_item(encode(1, 2, 3, 4, 5, 160)) is None  # ... nor the other way round
    assert decode_item(np.random.default_rng(0).uniform(-1, 1, 1600).astype(np.float32)) is None


def test_cached_upstream_serves_store_frames(data):
    from s3prl_dd.features.store import FeatureStore
    from s3prl_dd.upstream.cached import cached

    store = FeatureStore.open(data[1])
    up = cached(ckpt=str(data[1]))
    up([torch.randn(16000)])  # the Featurizer's probe is answered (with zeros)
    idx = [0, len(store) - 1]
    reqs = [torch.from_numpy(encode_item(i, int(store.index[i]["length"]), up.get_downsample_rates())) for i in idx]
    out = up(reqs)["hidden_states"][0]
    for row, i in enumerate(idx):
        f = torch.from_numpy(store.features(i).copy())
        assert torch.equal(out[row, :len(f)], f) and not out[row, len(f):].any()
    with pytest.raises(UserError, match="audio instead of store-item"):
        up([torch.randn(16000)])


def test_missing_utterance_is_named(data, tmp_path):
    from s3prl_dd.downstream.emotion_distilled.dataset import StoreItemDataset
    from s3prl_dd.features.store import FeatureStore

    meta = {"labels": {"neu": 0}, "meta_data": [{"path": "nowhere/ghost.wav", "label": "neu"}]}
    (tmp_path / "m.json").write_text(json.dumps(meta))
    with pytest.raises(UserError, match="nowhere/ghost.wav"):
        StoreItemDataset(FeatureStore.open(data[1]), tmp_path / "m.json")


def runner_result(exp: Path) -> tuple[int, float]:
    """(best dev step, test accuracy at that step) from the expert's log.log."""
    lines = (exp / "log.log").read_text().splitlines()
    best = [int(line.split("step ")[1].split(":")[0]) for line in lines if line.startswith("New best on dev")][-1]
    acc = [float(line.split("acc ")[1].split()[0]) for line in lines if line.startswith(f"test at step {best}:")][0]
    return best, acc


def test_runner_on_cached_store_matches_train_er(data, tmp_path):
    from s3prl_dd.er.train import er_config, train_er_on_store
    from s3prl_dd.features.store import FeatureStore

    corpus, store_dir = data
    exp = tmp_path / "exp"
    over = (f"config.downstream_expert.datarc.corpus='{corpus}',,config.downstream_expert.datarc.feature_store='{store_dir}',,"
            f"config.runner.total_steps={STEPS},,config.runner.eval_step={EVAL},,config.runner.save_step={STEPS},,"
            f"config.runner.log_step={EVAL},,config.optimizer.lr={LR}")
    r = subprocess.run([sys.executable, "-m", "s3prl_dd.run_downstream", "-m", "train", "-u", "cached", "-k", str(store_dir),
                        "-d", "emotion_distilled", "-c", str(CONFIG), "-p", str(exp), "--seed", str(SEED), "-o", over],
                       capture_output=True, text=True, timeout=240)
    assert r.returncode == 0, r.stderr[-3000:]
    runner_step, runner_acc = runner_result(exp)

    cfg = er_config(overrides=[f"runner.total_steps={STEPS}", f"runner.eval_step={EVAL}", f"runner.log_step={EVAL}",
                               f"optimizer.lr={LR}", "datarc.standardize=False", "datarc.train_batch_size=4",
                               "runner.gradient_accumulate_steps=8", "selection.metric='uar'"])
    res = train_er_on_store(FeatureStore.open(store_dir), 1, cfg, seed=SEED, device="cpu", schedule="s3prl",
                            return_model=True)
    assert res["best_step"] == runner_step
    assert abs(100 * res["test_acc"] - 100 * runner_acc) <= 1.0, (res["test_acc"], runner_acc)
    # the stronger statement behind it: the same model, up to float rounding
    ours = res["model"].state_dict()
    theirs = torch.load(exp / "dev-best.ckpt", map_location="cpu", weights_only=False)["Downstream"]
    for k, v in ours.items():
        assert torch.allclose(v, theirs[k], atol=1e-5), k
