import json

import numpy as np
import pytest
import torch
import yaml

from s3prl_dd.er import model as er_model
from s3prl_dd.er.data import ERData
from s3prl_dd.er.model import ERModel, input_space, load_checkpoint, pad, save_checkpoint
from s3prl_dd.er.pool import TeacherPool, build_pool, checkpoint_steps
from s3prl_dd.er.train import (CONFIG_PATH, DEFAULT_CONFIG, EarlyStop, er_config, microbatch_schedule, train_er,
                               train_er_on_store)
from s3prl_dd.features.store import make_meta, write_store
from s3prl_dd.protocol import LABELS
from s3prl_dd.utils import UserError

torch.set_num_threads(1)
LAB = list(LABELS)
REP = {"kind": "hidden_state", "layer": -1}


def blobs(n, dim=8, seed=0, shift=3.0, t=(4, 15)):
    """Variable-length utterances whose frame means separate the 4 classes."""
    rng = np.random.default_rng(seed)
    centres = np.random.default_rng(99).standard_normal((4, dim)) * shift
    y = np.arange(n) % 4
    feats = [(centres[c] + rng.standard_normal((int(rng.integers(*t)), dim))).astype(np.float32) + 5.0 for c in y]
    return ERData(feats, y, [f"u{i}" for i in range(n)])


def tiny_cfg(**over):
    cfg = er_config(profile="fast", overrides="runner.total_steps=60,,runner.eval_step=20,,runner.log_step=20")
    for k, v in over.items():
        node = cfg
        *path, last = k.split(".")
        for p in path:
            node = node[p]
        node[last] = v
    return cfg


def test_yaml_config_equals_defaults():
    with open(CONFIG_PATH) as f:
        assert yaml.safe_load(f) == DEFAULT_CONFIG
    fast = er_config(profile="fast")
    assert fast["optimizer"]["lr"] == 1e-3 and fast["runner"]["gradient_accumulate_steps"] == 8
    assert er_config()["optimizer"]["lr"] == 1e-4 and er_config()["datarc"]["train_batch_size"] == 4
    with pytest.raises(UserError):
        er_config(overrides="runner.totl_steps=3")


def test_frame_and_pooled_forward_are_equal():
    torch.manual_seed(0)
    m = ERModel(8).eval()
    feats = [torch.randn(t, 8) * 3 + 1 for t in (3, 11, 7)]
    x, lengths = pad(feats)
    frame_logits = m(x, lengths)
    pooled_logits = m.forward_pooled(torch.stack([f.mean(0) for f in feats]))
    assert torch.allclose(frame_logits, pooled_logits, atol=1e-5)
    assert m.supports_pooled
    emb = m.embed(x, lengths)
    assert emb.shape == (3, 11, 256) and torch.all(emb[0, 3:] == 0)
    assert set(k.split(".")[0] for k in m.state_dict()) == {"projector", "model"}  # s3prl expert's names


def test_deep_model_uses_time_and_refuses_pooled():
    torch.manual_seed(0)
    rc = dict(DEFAULT_CONFIG["modelrc"], select="DeepModel")
    m = ERModel(8, modelrc=rc).eval()
    x, lengths = pad([torch.randn(t, 8) for t in (12, 30)])
    assert m(x, lengths).shape == (2, 4) and not m.supports_pooled
    with pytest.raises(UserError):
        m.forward_pooled(torch.randn(2, 8))
    res = train_er(blobs(16), None, blobs(8, seed=1), tiny_cfg(**{"modelrc.select": "DeepModel",
                                                                   "runner.total_steps": 3}))
    assert not res["pooled"] and len(res["predictions"]) == 8
    with pytest.raises(UserError, match="frame-level"):
        train_er(ERData(blobs(8).pooled(), np.arange(8) % 4), None, None, tiny_cfg(**{"modelrc.select": "DeepModel"}))


def test_pooled_training_equals_frame_training():
    """The vectorised accumulation over time-means gives the same model as s3prl's loop of
    4-utterance mini-batches over frames (17 items: short last batches, epochs crossing steps)."""
    train, dev, test = blobs(17), blobs(8, seed=1), blobs(8, seed=2)
    stats = (np.full(8, 5.0, np.float32), np.full(8, 2.0, np.float32))
    a = train_er(train, dev, test, tiny_cfg(**{"datarc.pooled": True}), stats=stats, return_model=True)
    b = train_er(train, dev, test, tiny_cfg(**{"datarc.pooled": False}), stats=stats, return_model=True)
    assert a["pooled"] and not b["pooled"]
    for (k, va), vb in zip(a["model"].state_dict().items(), b["model"].state_dict().values()):
        assert torch.allclose(va, vb, atol=1e-5), k
    assert a["best_step"] == b["best_step"] and np.array_equal(a["predictions"], b["predictions"])


def test_microbatch_schedule_is_epochs_of_shuffled_batches():
    it = microbatch_schedule(10, 4, torch.Generator().manual_seed(0))
    batches = [next(it) for _ in range(6)]
    assert [len(b) for b in batches] == [4, 4, 2, 4, 4, 2]
    assert sorted(torch.cat(batches[:3]).tolist()) == list(range(10))


def test_train_er_run_dir_and_best_dev_checkpoint(tmp_path):
    train, dev, test = blobs(40), blobs(12, seed=1), blobs(12, seed=2)
    res = train_er(train, dev, test, tiny_cfg(), out_dir=tmp_path, seed=3,
                   meta={"representation": REP, "fold": "fold1"})
    assert res["test_uar"] > 0.9 and res["dev_uar"] is not None and res["train_seconds"] > 0
    for name in ("config.yaml", "metrics.jsonl", "result.json", "test_predictions.json"):
        assert (tmp_path / name).is_file()
    assert list(tmp_path.glob("events.out.tfevents*"))
    recs = [json.loads(l) for l in open(tmp_path / "metrics.jsonl")]
    assert {r["split"] for r in recs} == {"train", "dev", "test"}
    assert [r["step"] for r in recs if r["split"] == "dev"] == [20, 40, 60]
    # one best checkpoint kept; it reproduces the reported test predictions
    ckpts = list(tmp_path.glob("er-*.pt"))
    assert [p.name for p in ckpts] == [f"er-{res['best_step']}.pt"]
    raw = torch.load(ckpts[0], weights_only=True)
    assert raw["meta"]["representation"] == REP and raw["meta"]["step"] == res["best_step"]
    model, meta = load_checkpoint(ckpts[0])
    assert meta["dev_uar"] == pytest.approx(res["dev_uar"])
    preds = model.eval().forward_pooled(torch.from_numpy(test.pooled())).argmax(-1)  # no stats given
    assert np.array_equal(preds.numpy(), res["predictions"])
    saved = json.load(open(tmp_path / "test_predictions.json"))
    assert [p["pred"] for p in saved] == res["predictions"].tolist() and saved[0]["id"] == "u0"


def test_without_dev_the_last_step_is_tested():
    res = train_er(blobs(12), None, blobs(8, seed=1), tiny_cfg())
    assert res["best_step"] == 60 and res["dev_uar"] is None


def test_checkpoint_save_is_atomic(tmp_path, monkeypatch):
    m = ERModel(8)
    path = tmp_path / "er-1.pt"
    save_checkpoint(m, path, input_space=input_space(), step=1)
    before = path.read_bytes()

    def dying_save(obj, f, *a, **k):
        f.write(b"half a checkpoint")
        raise RuntimeError("disk died")

    monkeypatch.setattr(torch, "save", dying_save)
    with pytest.raises(RuntimeError):
        save_checkpoint(ERModel(8), path, input_space=input_space(), step=2)
    monkeypatch.undo()
    assert path.read_bytes() == before and load_checkpoint(path)[1]["step"] == 1
    assert not list(tmp_path.glob(".*tmp"))


def _store(tmp_path, dim=8):
    data = blobs(60, dim=dim)
    items = [{"id": i, "label": LAB[y], "session": k % 5 + 1, "features": f}
             for k, (i, y, f) in enumerate(zip(data.ids, data.labels, data.features))]
    folds = {f"fold{k}": {"train": sorted(it["id"] for it in items if it["session"] != k),
                          "test": sorted(it["id"] for it in items if it["session"] == k)} for k in range(1, 6)}
    return write_store(tmp_path / "store", items, make_meta("up", REP, dim), folds)


def test_train_on_store_standardises_with_fold_stats(tmp_path):
    store = _store(tmp_path)
    res = train_er_on_store(store, 2, tiny_cfg(), seed=0)
    assert res["test_uar"] > 0.9 and len(res["predictions"]) == len(store.split(2, "test"))


def test_teacher_pool(tmp_path):
    store = _store(tmp_path)
    cfg = tiny_cfg(**{"pool.seeds": [0, 1], "pool.checkpoints_per_seed": 3, "pool.first_step": 5})
    build_pool(store, 1, cfg, tmp_path / "pool", progress=False)
    pool = TeacherPool.load(tmp_path / "pool", expect_dim=8, expect_representation=REP)
    assert len(pool) == 6 and [e["step"] for e in pool.entries[:3]] == checkpoint_steps(5, 60, 3)
    assert all(e["dev_uar"] is not None for e in pool.entries)
    for t in pool.teachers:
        assert not t.training and not any(p.requires_grad for p in t.parameters())
    g1, g2 = torch.Generator().manual_seed(7), torch.Generator().manual_seed(7)
    assert [id(pool.sample(g1)) for _ in range(5)] == [id(pool.sample(g2)) for _ in range(5)]
    # teachers take raw store features and standardise them as in training
    x = torch.from_numpy(store.pooled(store.split(1, "test")))
    t = pool[0]
    assert torch.allclose(t.forward_pooled(x), t.model.forward_pooled((x - pool.mean) / pool.std))
    with pytest.raises(UserError, match="768-dim"):
        TeacherPool.load(tmp_path / "pool", expect_dim=768)
    with pytest.raises(UserError, match="hidden state 3"):
        TeacherPool.load(tmp_path / "pool", expect_representation={"kind": "hidden_state", "layer": 3})
    # resuming does not retrain finished seeds
    mtime = (tmp_path / "pool" / "seed0" / "result.json").stat().st_mtime
    build_pool(store, 1, cfg, tmp_path / "pool", progress=False)
    assert (tmp_path / "pool" / "seed0" / "result.json").stat().st_mtime == mtime


def test_checkpoint_steps_spacing():
    assert checkpoint_steps(10, 1000, 3) == [10, 100, 1000]
    assert checkpoint_steps(10, 30, 3, "linear") == [10, 20, 30]
    with pytest.raises(UserError):
        checkpoint_steps(0, 10, 3)


def test_train_er_takes_tensor_pairs_from_a_generator():
    """GAN samples arrive as (tensor features, tensor labels); pooled or frames both work."""
    g = torch.Generator().manual_seed(0)
    centres = torch.from_numpy(np.random.default_rng(99).standard_normal((4, 8)) * 3.0).float()  # as blobs()
    y = torch.arange(32) % 4
    pooled = centres[y] + torch.randn(32, 8, generator=g)
    frames = [centres[c] + torch.randn(6, 8, generator=g) for c in y]
    test = blobs(12, seed=2, shift=3.0)
    test = ERData([f - 5.0 for f in test.features], test.labels)  # blobs() adds 5
    for feats in (pooled, frames):
        r = train_er((feats, y), None, test, tiny_cfg())
        assert r["test_uar"] > 0.8


def test_early_stop_rule_on_a_toy_curve():
    """Dev UAR rises to step 300, then plateaus and dips: with patience 200 (evaluations every
    50 steps) the best is step 300 and the run stops at 500; an equal score is no improvement."""
    curve = {50: 0.4, 100: 0.5, 150: 0.55, 200: 0.6, 250: 0.6, 300: 0.7, 350: 0.7, 400: 0.65, 450: 0.69,
             500: 0.7, 550: 0.9}
    stop = EarlyStop(200)
    stopped_at = next(s for s in sorted(curve) if (stop.update(s, curve[s]) or True) and stop.done(s))
    assert (stop.best_step, stopped_at) == (300, 500)
    never = EarlyStop(None)
    assert not any((never.update(s, v) or True) and never.done(s) for s, v in curve.items())
    assert never.best_step == 550


def test_train_er_stops_by_patience_and_picks_the_input_space_on_dev(tmp_path):
    """The converge recipe: the run ends ``patience`` steps after its best dev step (well inside
    the cap), and under standardize=auto the space with the better dev score is kept, recorded
    in the result and in the checkpoint."""
    train, dev, test = blobs(40, seed=0), blobs(16, seed=1), blobs(16, seed=2)
    stats = (np.full(8, 3.0, np.float32), np.full(8, 0.5, np.float32))
    cfg = tiny_cfg(**{"runner.total_steps": 5000, "runner.patience": 100, "runner.eval_step": 10,
                      "datarc.standardize": "auto"})
    r = train_er(train, dev, test, cfg, stats=stats, out_dir=tmp_path)
    assert r["stopped"] == "patience" and r["steps"] == r["best_step"] + 100 and r["steps"] < 5000
    assert set(r["dev_by_space"]) == {"raw", "standardized"}
    assert r["dev_uar"] == max(r["dev_by_space"].values())
    assert 0 < r["seconds_to_best"] <= r["train_seconds"]
    ckpts = list(tmp_path.glob("er-*.pt"))
    assert [c.name for c in ckpts] == [f"er-{r['best_step']}.pt"]  # one checkpoint: the selected run's
    _, meta = load_checkpoint(ckpts[0])
    assert meta["input_space"]["standardized"] == r["standardized"]
    with pytest.raises(UserError, match="needs the fold's statistics"):
        train_er(train, dev, test, cfg)
