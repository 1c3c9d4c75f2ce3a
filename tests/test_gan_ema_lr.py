"""Generator EMA (s3prl_dd.gan.ema) and lr schedules (s3prl_dd.gan.lr_schedule) in the GAN trainer."""
import json
from pathlib import Path

import pytest
import torch
from torch import nn

from gan_fixtures import gan_cfg, tiny_store
from s3prl_dd.gan import checkpoint as ck
from s3prl_dd.gan.ema import GeneratorEMA
from s3prl_dd.gan.lr_schedule import LRSchedule, lr_factor
from s3prl_dd.gan.trainer import GANTrainer, train_gan
from s3prl_dd.utils import UserError

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return tiny_store(tmp_path_factory.mktemp("gan_ema") / "store")


def _cfg(steps=4, **train):
    """Cosine with 1 warm-up step over 4 steps; L_SML off, so no teacher pool is needed."""
    cfg = gan_cfg(steps=steps, **train)
    cfg["loss"]["lambda_sml"] = 0.0
    cfg["optim"].update(lr_d=2e-3, lr_schedule="cosine", warmup_steps=1, lr_min_ratio=0.1)
    return cfg


def _equal(a, b):
    if isinstance(a, torch.Tensor):
        return torch.equal(a, b)
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b))
    return a == b


def _records(run, split):
    lines = Path(run, "metrics.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r["split"] == split]


# ---------------------------------------------------------------------------- units
@pytest.mark.parametrize("decay, expect", [
    (0.9, 1.8),     # d_0 = 1/10, d_1 = 2/11 (warm-up): .1*0 + .9*1 = .9, then (2*.9 + 9*2)/11
    (0.15, 1.835),  # d_1 = min(.15, 2/11) = .15 (capped): .15*.9 + .85*2
])
def test_ema_follows_the_warmup_formula(decay, expect):
    live = nn.Sequential(nn.Linear(1, 1, bias=False), nn.BatchNorm1d(1))
    with torch.no_grad():
        live[0].weight.fill_(0.0)
    ema = GeneratorEMA(live, decay)
    for w in (1.0, 2.0):
        with torch.no_grad():
            live[0].weight.fill_(w)
            live[1].running_mean.fill_(10 * w)
        ema.update(live)
    assert ema.model[0].weight.item() == pytest.approx(expect, abs=1e-6)
    assert live[0].weight.item() == 2.0  # the live model is untouched
    assert ema.model[1].running_mean.item() == 20.0  # buffers copied, not averaged
    assert ema.updates == 2 and not ema.model.training
    assert not any(p.requires_grad for p in ema.model.parameters())
    with pytest.raises(UserError, match="ema_decay"):
        GeneratorEMA(live, 1.0)


def test_lr_factor_values():
    cos = lambda s: lr_factor(s, 10, "cosine")  # noqa: E731
    assert (cos(0), cos(5), cos(10), cos(12)) == pytest.approx((1.0, 0.55, 0.1, 0.1))
    # 2 warm-up steps, then cosine over the remaining 10: halfway at step 7
    warm = lambda s: lr_factor(s, 12, "cosine", warmup=2, min_ratio=0.2)  # noqa: E731
    assert (warm(0), warm(1), warm(2), warm(7), warm(12)) == pytest.approx((0.5, 1.0, 1.0, 0.6, 0.2))
    assert [lr_factor(s, 10, "constant", warmup=4) for s in (0, 1, 3, 9)] == [0.25, 0.5, 1.0, 1.0]
    assert {lr_factor(s, 10) for s in range(12)} == {1.0}


def test_lr_schedule_scales_both_optimizers_from_their_own_lr():
    a, b = nn.Parameter(torch.zeros(1)), nn.Parameter(torch.zeros(1))
    opts = [torch.optim.Adam([a], lr=1e-3), torch.optim.Adam([b], lr=2e-3)]
    sched = LRSchedule(opts, 10, "cosine")
    for step in (5, 5, 0):  # absolute, not compounding: the same step gives the same lr
        sched.set_step(step)
    assert [o.param_groups[0]["lr"] for o in opts] == [1e-3, 2e-3]
    sched.set_step(5)
    assert [o.param_groups[0]["lr"] for o in opts] == pytest.approx([0.55e-3, 1.1e-3])
    with pytest.raises(UserError, match="lr_schedule='linear'"):
        LRSchedule(opts, 10, "linear")


# ---------------------------------------------------------------------------- in the trainer
def test_trainer_evaluates_and_exports_the_average(store, tmp_path):
    r = train_gan(_cfg(ema_decay=0.9), store.path, "fold1", None, out_dir=tmp_path, device="cpu")
    t, run = r["trainer"], Path(r["run_dir"])
    last = ck.load_checkpoint(ck.checkpoint_path(run, 4))
    assert last["ema"]["updates"] == 4
    assert not _equal(last["ema"]["model"], last["generator"])
    # lr of step 4 = lr x factor(3 steps taken): warm-up 1, cosine over 3, 2/3 of the way
    assert last["opt_g"]["param_groups"][0]["lr"] == pytest.approx(1e-3 * 0.325)
    assert last["opt_d"]["param_groups"][0]["lr"] == pytest.approx(2e-3 * 0.325)
    # metrics.jsonl: the lr_g the evaluated step trained with (step 2: just past the warm-up)
    lrs = [(e["step"], e["lr_g"]) for e in _records(run, "eval")]
    assert lrs == [(2, pytest.approx(1e-3)), (4, pytest.approx(3.25e-4))]
    # best.pt / generator.pt hold the average of the best step, not the live generator
    best = ck.load_checkpoint(ck.checkpoint_path(run, r["best_step"]))
    exported = torch.load(run / "generator.pt", weights_only=True)
    assert _equal(exported["state_dict"], best["ema"]["model"]) and exported["ema_decay"] == 0.9
    # quick evaluation samples the average: moving the live weights changes nothing
    before = t.sample_balanced(2)[0]
    with torch.no_grad():
        for p in t.G.parameters():
            p.add_(1.0)
    assert torch.equal(t.sample_balanced(2)[0], before)


class _Crash(Exception):
    pass


def test_interrupted_run_resumes_exactly(store, tmp_path, monkeypatch):
    straight = train_gan(_cfg(ema_decay=0.9), store.path, "fold1", None, out_dir=tmp_path / "a", device="cpu")
    step = GANTrainer.train_step

    def crash_after_step_2(self):
        if self.step == 2:
            raise _Crash
        return step(self)

    monkeypatch.setattr(GANTrainer, "train_step", crash_after_step_2)
    with pytest.raises(_Crash):
        train_gan(_cfg(ema_decay=0.9), store.path, "fold1", None, out_dir=tmp_path / "b", device="cpu")
    monkeypatch.undo()
    (half,) = (tmp_path / "b").iterdir()
    assert [s for s, _ in ck.list_checkpoints(half)] == [2]
    resumed = train_gan(None, None, None, resume=half, device="cpu")
    assert resumed["step"] == 4
    a, b = (ck.load_checkpoint(ck.checkpoint_path(run, 4)) for run in (straight["run_dir"], half))
    for key in ("generator", "discriminator", "opt_g", "opt_d", "ema", "best"):
        assert _equal(a[key], b[key]), key
    assert _records(straight["run_dir"], "eval") and all(
        (x["lr_g"], x["dev_uar"]) == (y["lr_g"], y["dev_uar"])
        for x, y in zip(_records(straight["run_dir"], "eval"), _records(half, "eval"), strict=True))


def test_ema_switched_on_at_resume_starts_from_the_resumed_generator(store, tmp_path):
    cfg = _cfg(steps=2, eval_every=0)
    cfg["optim"]["lr_schedule"] = "constant"
    r = train_gan(cfg, store.path, "fold1", None, out_dir=tmp_path, device="cpu")
    assert ck.load_checkpoint(ck.checkpoint_path(r["run_dir"], 2))["ema"] is None
    train_gan(None, None, None, resume=r["run_dir"], device="cpu", overrides="train.steps=3,,train.ema_decay=0.9")
    g2 = ck.load_checkpoint(ck.checkpoint_path(r["run_dir"], 2))["generator"]
    c3 = ck.load_checkpoint(ck.checkpoint_path(r["run_dir"], 3))
    assert c3["ema"]["updates"] == 1
    params = {name for name, _ in r["trainer"].G.named_parameters()}
    assert params < set(c3["ema"]["model"])
    for name, avg in c3["ema"]["model"].items():
        live = c3["generator"][name]
        if name in params:  # one update from the step-2 weights, d_0 = 0.1
            assert torch.allclose(avg, 0.1 * g2[name] + 0.9 * live, atol=1e-6), name
        else:
            assert torch.equal(avg, live), name
