import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from gan_fixtures import gan_cfg, tiny_pool, tiny_store
from s3prl_dd.er.pool import Teacher, TeacherPool
from s3prl_dd.features.store import FeatureStore
from s3prl_dd.gan import checkpoint as ck
from s3prl_dd.gan import losses
from s3prl_dd.gan.realdata import RealData, ShardedStream, teacher_logits
from s3prl_dd.gan.trainer import train_gan
from s3prl_dd.utils import UserError

torch.set_num_threads(1)
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    root = tmp_path_factory.mktemp("gan")
    store = tiny_store(root / "store")
    return {"root": root, "store": store, "pool": tiny_pool(store, root / "pool")}


def _train(env, out, cfg=None, **kw):
    r = train_gan(cfg or gan_cfg(), env["store"].path, "fold1", env["pool"], out_dir=out, device="cpu", **kw)
    r.pop("trainer")
    return r


def _tensors_equal(a, b):
    if isinstance(a, torch.Tensor):
        return torch.equal(a, b)
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_tensors_equal(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_tensors_equal(x, y) for x, y in zip(a, b))
    return a == b


def test_resume_continues_exactly(env, tmp_path):
    straight = _train(env, tmp_path / "a")
    half = _train(env, tmp_path / "b", overrides="train.steps=2")
    assert [s for s, _ in ck.list_checkpoints(half["run_dir"])] == [2]
    resumed = train_gan(None, None, None, out_dir=half["run_dir"], resume=True, device="cpu",
                        overrides="train.steps=4")
    assert resumed["run_dir"] == half["run_dir"] and resumed["step"] == 4
    a = ck.load_checkpoint(ck.checkpoint_path(straight["run_dir"], 4))
    b = ck.load_checkpoint(ck.checkpoint_path(half["run_dir"], 4))
    for key in ("generator", "discriminator", "opt_g", "opt_d", "best"):
        assert _tensors_equal(a[key], b[key]), key
    # the curves continue: one record per (step, split), same values as the straight run
    rec = lambda run: [json.loads(x) for x in Path(run, "metrics.jsonl").read_text().splitlines()]
    ra, rb = rec(straight["run_dir"]), rec(half["run_dir"])
    assert [(r["step"], r["split"]) for r in ra] == [(r["step"], r["split"]) for r in rb]
    for x, y in zip(ra, rb):
        assert x.get("generator/total") == y.get("generator/total") and x.get("dev_uar") == y.get("dev_uar")


def test_run_layout_export_and_load(env, tmp_path):
    r = _train(env, tmp_path, gan_cfg(steps=3, save_every=1, keep_last=2))
    run = Path(r["run_dir"])
    assert run.name == "00000-gan_att-fold1"
    assert [s for s, _ in ck.list_checkpoints(run)] == [2, 3]  # keep_last
    assert {"config.yaml", "metrics.jsonl", "best.pt", "generator.pt", "result.json"} <= {p.name for p in run.iterdir()}
    assert any(p.name.startswith("events.out.tfevents") for p in run.iterdir())
    logged = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    train_keys = set(logged[0])
    for term in ("critic/adv", "critic/gp", "critic/cls_real", "critic/cls_fake", "critic/wasserstein",
                 "generator/adv", "generator/cls_fake", "generator/fm", "generator/div", "generator/sml"):
        assert term in train_keys, term
    raw = torch.load(run / "generator.pt", weights_only=True)
    assert raw["labels"] == env["store"].label_map and raw["representation"] == env["store"].representation
    assert abs(sum(raw["prior"]) - 1) < 1e-6 and raw["dim"] == 8
    g = ck.load_generator(run / "generator.pt")
    best = ck.load_checkpoint(ck.checkpoint_path(run, r["best_step"])) if r["best_step"] in (2, 3) else None
    if best is not None and r["best_step"] == 3:  # generator.pt is the best generator
        assert _tensors_equal(g.generator.state_dict(), best["generator"])
    mean, std = env["store"].stats("fold1")
    y, e = torch.tensor([0, 1, 2, 3]), torch.randn(4, g.noise_dim)
    expect = g.generator.generate(y, e) * torch.from_numpy(std) + torch.from_numpy(mean)
    assert torch.allclose(g(y, e), expect) and g(y, e).shape == (4, 8, 8)


def test_moment_matching_term_is_trained_and_logged_only_when_weighted(env, tmp_path):
    on = _train(env, tmp_path / "on", overrides="loss.lambda_mm=1.0,,train.steps=2")
    logged = [json.loads(x) for x in Path(on["run_dir"], "metrics.jsonl").read_text().splitlines()]
    mm = [r["generator/mm"] for r in logged if "generator/mm" in r]
    assert len(mm) == 2 and all(v > 0 for v in mm)
    off = _train(env, tmp_path / "off", overrides="train.steps=2")
    assert not any("generator/mm" in x for x in Path(off["run_dir"], "metrics.jsonl").read_text().splitlines())
    fixed = train_gan(gan_cfg(), env["store"].path, "fold1", env["pool"], out_dir=tmp_path / "train", device="cpu",
                      overrides="loss.lambda_mm=1.0,,loss.mm_targets='train',,train.steps=2")
    trainer = fixed.pop("trainer")
    mean, std, scale = trainer.mm_targets
    assert mean.shape == std.shape == (4, 8) and torch.isfinite(mean).all() and float(scale) > 0
    with pytest.raises(UserError, match="mm_targets"):
        _train(env, tmp_path / "bad", overrides="loss.lambda_mm=1.0,,loss.mm_targets='dev'")


def test_train_split_time_mean_targets_are_each_class_moments_of_crops(env):
    store = env["store"]
    att = RealData(store, "fold1", gan_cfg("gan_att")["model"], "cpu")
    mean, std, scale = losses.class_moments(*att.crop_time_means(crops=3, seed=0), 4)
    again = losses.class_moments(*att.crop_time_means(crops=3, seed=0), 4)
    assert all(torch.equal(a, b) for a, b in zip((mean, std, scale), again))  # seeded: a resume gets the same
    # crops of these 4..14-frame utterances are tiles or crops of 8: their means stay near each
    # class's utterance means, far apart between classes
    mlp = RealData(store, "fold1", gan_cfg("gan_mlp")["model"], "cpu")
    m_mean, m_std, m_scale = losses.class_moments(*mlp.crop_time_means(crops=3, seed=0), 4)
    for c in range(4):
        items = mlp.items[mlp.labels == c].reshape(-1, 8)
        assert torch.allclose(m_mean[c], items.mean(0)) and torch.allclose(m_std[c], items.std(0))
    assert torch.allclose(mean, m_mean, atol=0.5)

def test_mean_path_trains_exports_and_loads(env, tmp_path):
    """The 1-D GAN-ATT with the mean path through the whole trainer (both critic inputs feed
    feature matching and the GP) and back from generator.pt: the loaded generator's time mean,
    de-standardised, is its MLP head's."""
    cfg = gan_cfg(steps=2)
    cfg["model"].update(conv="1d", g_mean_hidden=[16], d_mean_hidden=[16])
    r = _train(env, tmp_path, cfg)
    g = ck.load_generator(Path(r["run_dir"]) / "generator.pt")
    assert g.generator.mean_head is not None
    y, e = torch.tensor([0, 1, 2, 3]), torch.randn(4, g.noise_dim)
    mean, std = (torch.from_numpy(a) for a in env["store"].stats("fold1"))
    head = g.generator.mean_head(g.generator.make_z(y, e)).squeeze(1)
    assert torch.allclose(g(y, e).mean(1), head * std + mean, atol=1e-4)


def test_gan_mlp_may_standardise_its_means_with_their_own_statistics(env, tmp_path):
    """train.standardize=means: GAN-MLP's utterance means get unit scale per dimension (with
    frame statistics their spread is the layer's between-utterance share), and the exported
    generator de-standardises with those statistics, so its samples stay raw features."""
    store, model = env["store"], gan_cfg("gan_mlp")["model"]
    frames = RealData(store, "fold1", model, "cpu")
    means = RealData(store, "fold1", model, "cpu", standardize="means")
    assert torch.allclose(means.items.std(0).squeeze(), torch.ones(8), atol=1e-4)
    assert torch.allclose(frames.destandardize(frames.items), means.destandardize(means.items), atol=1e-4)
    assert not torch.allclose(frames.items.std(0).squeeze(), torch.ones(8), atol=0.1)
    r = _train(env, tmp_path, gan_cfg("gan_mlp", steps=2, standardize="means"))
    g = ck.load_generator(Path(r["run_dir"]) / "generator.pt")
    y, e = torch.tensor([0, 1, 2, 3]), torch.randn(4, g.noise_dim)
    assert torch.allclose(g(y, e), g.generator.generate(y, e) * means.std + means.mean, atol=1e-5)
    with pytest.raises(UserError, match="means for gan_mlp"):
        RealData(store, "fold1", gan_cfg("gan_att")["model"], "cpu", standardize="means")


def test_nan_guard_names_step_and_term(env, tmp_path, monkeypatch):
    monkeypatch.setattr(losses, "diversity_loss", lambda *a, **k: torch.tensor(float("nan")))
    with pytest.raises(UserError, match=r"step 1: loss term 'generator/div' is nan"):
        _train(env, tmp_path)
    assert not list(tmp_path.glob("*/ckpt-*.pt"))


class SpyStore(FeatureStore):
    """Records every utterance whose features or labels are read."""
    touched: set

    def features(self, i):
        self.touched.add(int(i))
        return super().features(i)

    def labels(self, indices=None):
        self.touched.update(int(i) for i in (indices if indices is not None else range(len(self))))
        return super().labels(indices)

    def pooled(self, indices=None):
        raise AssertionError("pooled() reads every utterance, test included")


def test_trainer_reads_train_and_dev_only(env, tmp_path):
    spy = SpyStore.open(env["store"].path)
    spy.touched = set()
    r = train_gan(gan_cfg(steps=2), spy, "fold1", env["pool"], out_dir=tmp_path, device="cpu")
    train, dev, test = (set(spy.split("fold1", p)) for p in ("train", "dev", "test"))
    assert set(r["trainer"].data.indices) == train
    assert spy.touched == train | dev and not spy.touched & test
    # without quick evaluation the dev split is not read either
    spy.touched = set()
    train_gan(gan_cfg(steps=1, eval_every=0), spy, "fold1", env["pool"], out_dir=tmp_path, device="cpu")
    assert spy.touched == train


def test_teacher_gets_raw_features_in_its_own_space(env):
    store = env["store"]
    data = RealData(store, "fold1", gan_cfg()["model"], "cpu")
    raw = torch.stack([torch.from_numpy(np.array(store.features(i)[:4])) for i in data.indices[:5]])
    pool = TeacherPool.load(env["pool"])
    t = pool[0]
    # the pool's teacher standardises with the same fold stats: its own forward on raw frames
    lengths = torch.full((5,), 4)
    assert torch.allclose(teacher_logits(t, data.standardize(raw), data), t(raw, lengths), atol=1e-5)
    # a teacher trained in another space (other stats) still receives raw features
    other = Teacher(t.model, torch.full((8,), -1.0), torch.full((8,), 0.5))
    want = other.model.forward_pooled((raw.mean(1) + 1.0) / 0.5)
    assert torch.allclose(teacher_logits(other, data.standardize(raw), data), want, atol=1e-5)


def test_bad_setups_are_user_errors(env, tmp_path):
    with pytest.raises(UserError, match="needs a teacher pool"):
        train_gan(gan_cfg(), env["store"].path, "fold1", None, out_dir=tmp_path, device="cpu")
    other = tiny_pool(env["store"], tmp_path / "pool2", fold="fold2")
    with pytest.raises(UserError, match="fold2, not fold1"):
        train_gan(gan_cfg(), env["store"].path, "fold1", other, out_dir=tmp_path, device="cpu")
    cfg = gan_cfg()
    cfg["model"]["D"] = 9
    with pytest.raises(UserError, match="model.D=9"):
        train_gan(cfg, env["store"].path, "fold1", env["pool"], out_dir=tmp_path, device="cpu")
    with pytest.raises(UserError, match="does not exist"):
        train_gan(gan_cfg(), env["store"].path, "fold1", env["pool"], out_dir=tmp_path, overrides="train.stepz=3")


def test_sharded_stream_partitions_each_epoch():
    a, b = ShardedStream(10, seed=3, rank=0, world=2), ShardedStream(10, seed=3, rank=1, world=2)
    for epoch in range(3):
        got = torch.cat([a.take(epoch * 5, 5), b.take(epoch * 5, 5)])
        assert sorted(got.tolist()) == list(range(10))
    single = ShardedStream(7, seed=1)
    assert torch.equal(single.take(3, 9), torch.cat([single.take(3, 4), single.take(7, 5)]))
    assert sorted(single.take(0, 7).tolist()) == list(range(7))


DDP_WORKER = textwrap.dedent("""
    import os, sys, torch
    torch.set_num_threads(1)
    sys.path.insert(0, sys.argv[4])
    from gan_fixtures import gan_cfg
    from s3prl_dd.gan.trainer import train_gan
    cfg = gan_cfg("gan_att", steps=3, eval_every=0, save_every=3)
    cfg["optim"]["batch_size"] = 8
    r = train_gan(cfg, sys.argv[1], "fold1", sys.argv[2], out_dir=sys.argv[3], device="cpu")
    t = r["trainer"]
    torch.save({"g": t.G.state_dict(), "d": t.D.state_dict(), "n": len(t.data), "pos": t.stream.take(0, 13)},
               os.path.join(sys.argv[3], f"rank{os.environ['RANK']}.pt"))
""")


def test_ddp_two_processes_gloo(env, tmp_path):
    script = tmp_path / "worker.py"
    script.write_text(DDP_WORKER)
    out = tmp_path / "runs"
    out.mkdir()
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           str(script), str(env["store"].path), str(env["pool"]), str(out), str(REPO / "tests")]
    envv = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=envv)
    assert p.returncode == 0, p.stderr[-3000:]
    r0, r1 = (torch.load(out / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    for key in ("g", "d"):
        for name, v in r0[key].items():
            if "running" in name or "num_batches" in name:
                continue  # BatchNorm statistics are per rank on CPU (SyncBatchNorm is CUDA-only)
            assert torch.equal(v, r1[key][name]), name
    assert not set(r0["pos"].tolist()[:12]) & set(r1["pos"].tolist()[:12])  # disjoint shards
    runs = [p for p in out.iterdir() if p.is_dir()]
    assert len(runs) == 1 and [s for s, _ in ck.list_checkpoints(runs[0])] == [3]
    ckpt = ck.load_checkpoint(ck.checkpoint_path(runs[0], 3))
    assert ckpt["world_size"] == 2 and _tensors_equal(ckpt["generator"], r0["g"])
