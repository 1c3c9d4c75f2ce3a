"""benchmarks/layer_stats.py recovers the between-utterance share and the within-utterance
smoothness of stores built with known values."""
import numpy as np
import pytest

from benchmark_scripts import load_benchmark
from s3prl_dd.features.store import make_meta, write_store
from s3prl_dd.protocol import LABELS
from s3prl_dd.utils import UserError

DIM = 6


def ar_store(path, between_var: float, rho: float, frames: int = 120, seed: int = 0, per_session: int = 24):
    """Utterance means ~ N(class centre, between_var), frames = mean + a stationary AR(1) of
    unit variance and coefficient rho."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((len(LABELS), DIM)) * 0.5
    items, sessions = [], {}
    for s in range(1, 4):
        for k in range(per_session):
            c = k % len(LABELS)
            mean = centres[c] + np.sqrt(between_var) * rng.standard_normal(DIM)
            x = np.empty((frames, DIM))
            x[0] = rng.standard_normal(DIM)
            for t in range(1, frames):
                x[t] = rho * x[t - 1] + np.sqrt(1 - rho ** 2) * rng.standard_normal(DIM)
            uid = f"s{s}/u{k}.wav"
            items.append({"id": uid, "path": uid, "label": list(LABELS)[c], "speaker": f"spk{s}", "session": s,
                          "features": (mean + x).astype(np.float32)})
            sessions.setdefault(s, []).append(uid)
    folds = {f"fold{s}": {"train": [i for t, ids in sessions.items() if t != s for i in ids], "test": sessions[s]}
             for s in sessions}
    meta = make_meta("fbank_no_cmvn", {"kind": "hidden_state", "layer": -1}, DIM, downsample_rate=160, shard_size=32)
    return write_store(path, items, meta, folds)


def test_layer_stats_recovers_known_structure(tmp_path):
    stats = load_benchmark("layer_stats").layer_stats
    smooth = stats(ar_store(tmp_path / "a", between_var=3.0, rho=0.9), "fold1")
    rough = stats(ar_store(tmp_path / "b", between_var=0.1, rho=0.0), "fold1")
    assert smooth["lag1_autocorr"] == pytest.approx(0.9, abs=0.05)
    assert rough["lag1_autocorr"] == pytest.approx(0.0, abs=0.05)
    # between share = (class spread + between_var) / (that + 1); class centres add ~0.25 * 3/4
    assert smooth["between_share"] > 0.7 and rough["between_share"] < 0.35
    assert smooth["utterances"] == rough["utterances"] > 30  # the train part of fold1 (dev held out)


def test_layer_stats_refuses_stores_of_different_corpora(tmp_path):
    main = load_benchmark("layer_stats").main
    a = ar_store(tmp_path / "a", 1.0, 0.5, frames=8)
    b = ar_store(tmp_path / "b", 1.0, 0.5, frames=8, per_session=12)
    with pytest.raises(UserError, match="different fold1 train splits"):
        main([str(a.path), str(b.path), "--folds", "1"])
