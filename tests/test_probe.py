"""The SID privacy probe: the ser_probe upstream (shape, frozen), SUPERB SID through s3prl's
voxceleb1 expert, the within-corpus speaker probe, and the memorisation check."""
import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from s3prl_dd.er.model import ERModel, input_space, save_checkpoint
from s3prl_dd.features.store import make_meta, write_store
from s3prl_dd.probe import (SERProjector, check_generator, checkpoint_kind, load_ser_projector, memorization_check,
                            probe_run, speaker_probe, speaker_split)
from s3prl_dd.protocol import LABELS
from s3prl_dd.utils import UserError

torch.set_num_threads(1)
ROOT = Path(__file__).resolve().parent.parent
LAB = list(LABELS)
REP = {"kind": "hidden_state", "layer": -1}
DIM = 16


# ---------------------------------------------------------------------------- fixtures
SPK_C = np.random.default_rng(7).standard_normal((10, DIM)) * 3.0
CLS_C = np.random.default_rng(8).standard_normal((4, DIM)) * 1.5


def utterance(rng, spk: int, c: int, t: int) -> np.ndarray:
    """frames = offset + speaker centre + class centre + noise: speakers are linearly separable
    from time-means, and raw features are far from standard scale."""
    return (10.0 + 2.0 * (SPK_C[spk] + CLS_C[c] + rng.standard_normal((t, DIM)))).astype(np.float32)


def speaker_store(path, per_speaker=10, seed=0):
    """5 sessions x 2 speakers (spk0..spk9), utterances of 8..20 frames."""
    rng = np.random.default_rng(seed)
    items, sessions = [], {}
    for s in range(1, 6):
        for g in range(2):
            spk = 2 * (s - 1) + g
            for k in range(per_speaker):
                uid = f"s{s}/spk{spk}/u{k}.wav"
                items.append({"id": uid, "path": uid, "label": LAB[k % 4], "speaker": f"spk{spk}", "session": s,
                              "features": utterance(rng, spk, k % 4, int(rng.integers(8, 21)))})
                sessions.setdefault(s, []).append(uid)
    folds = {f"fold{s}": {"train": [i for t, ids in sessions.items() if t != s for i in ids],
                          "test": list(sessions[s])} for s in sessions}
    return write_store(path, items, make_meta("fbank_no_cmvn", REP, DIM, downsample_rate=160, shard_size=32), folds)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return speaker_store(tmp_path_factory.mktemp("probe") / "store")


def er_ckpt(path, dim, upstream="fbank_no_cmvn", stats=None, seed=0, **meta):
    """An ER checkpoint trained raw (stats None) or standardised with ``stats``."""
    torch.manual_seed(seed)
    model = ERModel(dim, 4)
    extra = {"representation": REP, "upstream": upstream, "fold": "fold1", **meta}
    save_checkpoint(model, path, input_space=input_space(stats), **extra)
    return model


# ---------------------------------------------------------------------------- SER projector
def test_er_checkpoint_projector_is_the_models_first_layer_and_frozen(store, tmp_path):
    mean, std = store.stats("fold1")
    model = er_ckpt(tmp_path / "er-10.pt", DIM, stats=(mean, std))
    proj = load_ser_projector(tmp_path / "er-10.pt")
    assert isinstance(proj, SERProjector) and proj.info["source"] == "er" and proj.info["input_space"] == "standardized"
    x = torch.from_numpy(store.features(0)).unsqueeze(0)
    lengths = torch.tensor([x.shape[1]])
    want = model.embed((x - torch.from_numpy(mean)) / torch.from_numpy(std), lengths)
    torch.testing.assert_close(proj(x), want, rtol=1e-5, atol=1e-5)
    # frozen: no trainable parameter, stays in eval, and no graph even from an input that wants one
    assert not any(p.requires_grad for p in proj.parameters())
    proj.train()
    assert not proj.training
    out = proj(x.clone().requires_grad_(True))
    assert not out.requires_grad and out.grad_fn is None
    # time-mean pooling commutes with the (affine) layer: what the pooled probe relies on
    torch.testing.assert_close(proj(x.mean(1)), proj(x).mean(1), rtol=1e-4, atol=1e-4)


def test_a_checkpoint_is_probed_in_the_space_it_was_trained_in(store, tmp_path):
    """Trained raw -> probed raw, trained standardised -> probed with its own statistics, whatever
    statistics a caller has at hand; a checkpoint that does not say is refused."""
    mean, std = store.stats("fold1")
    x = torch.from_numpy(store.features(0)).unsqueeze(0)
    lengths = torch.tensor([x.shape[1]])
    raw_model = er_ckpt(tmp_path / "raw" / "er-5.pt", DIM)
    raw = load_ser_projector(tmp_path / "raw" / "er-5.pt")
    assert not raw.standardizes and raw.info["input_space"] == "raw"
    torch.testing.assert_close(raw(x), raw_model.embed(x, lengths), rtol=1e-5, atol=1e-5)
    std_model = er_ckpt(tmp_path / "std" / "er-5.pt", DIM, stats=(mean, std))
    stdp = load_ser_projector(tmp_path / "std" / "er-5.pt")
    assert stdp.standardizes
    torch.testing.assert_close(stdp(x), std_model.embed((x - torch.from_numpy(mean)) / torch.from_numpy(std), lengths),
                               rtol=1e-5, atol=1e-5)
    assert not torch.allclose(stdp(x), std_model.embed(x, lengths))
    # statistics from outside can only disagree with the checkpoint: refused, not applied
    with pytest.raises(UserError, match="records its own input space"):
        load_ser_projector(tmp_path / "raw" / "er-5.pt", stats=(mean, std))
    # a checkpoint from before input spaces were recorded
    old = torch.load(tmp_path / "raw" / "er-5.pt", weights_only=True)
    del old["meta"]["input_space"]
    torch.save(old, tmp_path / "old.pt")
    with pytest.raises(UserError, match="input space"):
        load_ser_projector(tmp_path / "old.pt")
    # probe_run applies each row in its own space (no store statistics are forced on it)
    block = probe_run(store, "fold1", {"real": str(tmp_path / "raw" / "er-5.pt")}, seeds=[0],
                      cfg={"steps": 5})
    assert block["rows"][1]["name"] == "real"


def runner_ckpt(path, dim, args: dict, featurizer=None, seed=0):
    """What s3prl's runner writes for -d emotion_distilled (the keys the probe reads)."""
    torch.manual_seed(seed)
    model = ERModel(dim, 4)
    down = {k: v for k, v in model.state_dict().items()}
    down["input_space_standardized"] = torch.zeros(1)  # what emotion_distilled's expert records
    ns = argparse.Namespace(**{"upstream_feature_selection": "hidden_states", "upstream_layer_selection": None,
                               "upstream_feature_normalize": False, "downstream": "emotion_distilled",
                               "upstream_ckpt": None, **args})
    torch.save({"Downstream": down, "Featurizer": featurizer or {}, "Args": ns, "Step": 10,
                "Optimizer": {}}, path)
    return model


def test_runner_checkpoint_is_detected_and_read(tmp_path):
    model = runner_ckpt(tmp_path / "dev-best.ckpt", DIM, {"upstream": "fbank_no_cmvn"})
    proj = load_ser_projector(tmp_path / "dev-best.ckpt")
    assert proj.info["source"] == "runner" and not proj.standardizes  # the runner's expert sees raw features
    assert proj.upstream == "fbank_no_cmvn" and proj.representation == REP
    x = torch.randn(3, DIM)
    torch.testing.assert_close(proj(x), model.projector(x).detach())
    # a multi-layer upstream: the trained Featurizer's softmaxed weights are the representation
    runner_ckpt(tmp_path / "w.ckpt", DIM, {"upstream": "hubert", "upstream_feature_normalize": True},
                featurizer={"weights": torch.tensor([0.0, 1.0, 2.0])})
    rep = load_ser_projector(tmp_path / "w.ckpt").representation
    assert rep["kind"] == "featurizer" and rep["normalize"] and np.allclose(rep["weights"], torch.softmax(torch.tensor([0., 1., 2.]), 0))
    # trained on GAN samples (-u synthetic -k generator.pt): probed on the generator's real upstream
    torch.save({"format": "s3prl-dd-generator", "upstream": "fbank_no_cmvn", "representation": {"kind": "hidden_state", "layer": 0}},
               tmp_path / "generator.pt")
    runner_ckpt(tmp_path / "g.ckpt", DIM, {"upstream": "synthetic", "upstream_ckpt": str(tmp_path / "generator.pt")})
    p = load_ser_projector(tmp_path / "g.ckpt")
    assert p.upstream == "fbank_no_cmvn" and p.representation == {"kind": "hidden_state", "layer": 0}
    torch.save({"something": 1}, tmp_path / "other.pt")
    assert checkpoint_kind(torch.load(tmp_path / "other.pt")) == "unknown"
    with pytest.raises(UserError, match="neither"):
        load_ser_projector(tmp_path / "other.pt")


def test_ser_probe_upstream_shape_and_frozenness(tmp_path):
    import s3prl.hub as hub

    er_ckpt(tmp_path / "er-1.pt", 240, stats=(np.zeros(240), np.full(240, 3.0)))
    up = hub.ser_probe(ckpt=str(tmp_path / "er-1.pt"))
    wavs = [0.05 * torch.randn(16000), 0.05 * torch.randn(12000)]
    out = up(wavs)
    (h,) = out["hidden_states"]
    real = up.real(wavs)["hidden_states"][-1]
    assert h.shape == (2, real.shape[1], 256) and out["last_hidden_state"] is h
    assert up.get_downsample_rates("hidden_states") == 160
    assert not any(p.requires_grad for p in up.parameters())
    up.train()  # what s3prl's runner does under -f
    assert not up.training and not up.ser.training and not up.real.training
    with torch.enable_grad():
        h2 = up([w.requires_grad_(True) for w in wavs])["hidden_states"][0]
    assert not h2.requires_grad
    torch.testing.assert_close(h2, h)  # eval mode both times: deterministic


# ---------------------------------------------------------------------------- SUPERB SID (s3prl voxceleb1)
def test_sid_recipe_on_ser_probe_through_s3prl_runner(tmp_path):
    """s3prl's own voxceleb1 expert on a VoxCeleb1 layout, a few steps, -u ser_probe with -f
    (asks the runner to fine-tune the upstream): the SER layer must come out unchanged."""
    from s3prl_dd.probe.sid import read_sid_log, sid_argv, voxceleb_layout

    layout = voxceleb_layout(tmp_path / "vox", n_speakers=4, n_per_speaker=4)
    er_ckpt(tmp_path / "er-1.pt", 240, stats=(np.full(240, -5.0), np.full(240, 3.0)))
    fast = ("config.runner.total_steps=4,,config.runner.eval_step=2,,config.runner.save_step=2,,"
            "config.runner.log_step=2,,config.runner.gradient_accumulate_steps=1,,config.downstream_expert.datarc.max_timestep=16000")
    exp = tmp_path / "sid"
    argv = sid_argv("ser_probe", exp, layout["file_path"], layout["meta_data"], ckpt=tmp_path / "er-1.pt",
                    overrides=fast, device="cpu") + ["-f"]
    r = subprocess.run([sys.executable, "-m", "s3prl_dd.run_downstream", *argv], cwd=tmp_path,
                       capture_output=True, text=True, timeout=120,
                       env={**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"})
    assert r.returncode == 0, r.stderr[-3000:]
    res = read_sid_log(exp)
    assert set(res["dev"]) == {2, 4} and set(res["test"]) == {2, 4}
    ckpt = torch.load(exp / "states-4.ckpt", map_location="cpu", weights_only=False)
    assert ckpt["Downstream"]["model.post_net.linear.weight"].shape[0] == 1251  # SUPERB's SID head
    before = torch.load(tmp_path / "er-1.pt", weights_only=True)["state_dict"]["projector.weight"]
    torch.testing.assert_close(ckpt["Upstream"]["ser.projector.weight"], before)


# ---------------------------------------------------------------------------- within-corpus probe
def test_speaker_split_is_stratified_and_seeded():
    spk = ["a"] * 10 + ["b"] * 7 + ["c"] * 2
    tr, te = speaker_split(spk, 0.7, seed=3)
    assert sorted(np.concatenate([tr, te]).tolist()) == list(range(len(spk)))
    counts = {s: sum(spk[i] == s for i in tr) for s in "abc"}
    assert counts == {"a": 7, "b": 5, "c": 1}
    assert np.array_equal(speaker_split(spk, 0.7, seed=3)[0], tr)
    assert not np.array_equal(speaker_split(spk, 0.7, seed=4)[0], tr)


def speaker_blind(store, fold="fold1"):
    """An SER first layer that projects out the speakers' subspace: speaker-blind by design."""
    mean, std = store.stats(fold)
    z = (store.pooled() - mean) / std
    spk = np.array([e["speaker"] for e in store.index])
    centres = np.stack([z[spk == s].mean(0) for s in sorted(set(spk))])
    u, _, _ = np.linalg.svd((centres - centres.mean(0)).T, full_matrices=False)
    p = np.eye(store.dim) - u[:, :9] @ u[:, :9].T  # 10 speakers span 9 directions
    model = ERModel(store.dim, 4)
    with torch.no_grad():
        model.projector.weight.zero_()
        model.projector.weight[: store.dim] = torch.from_numpy(p.astype(np.float32))
    return model


def test_within_corpus_probe_and_table(store, tmp_path):
    rows = speaker_probe(store, "fold1", {"upstream": None, "blind": load_ser_projector(speaker_blind(store),
                                                                                        stats=store.stats("fold1"))},
                         seeds=[0, 1], cfg={"steps": 200, "lr": 1e-2})
    assert rows["upstream"]["acc_mean"] > 0.9  # separable speakers, plain features
    assert rows["blind"]["acc_mean"] < 0.4     # chance is 0.1
    assert rows["upstream"]["n_speakers"] == 10 and rows["upstream"]["n_train"] == 70

    er_ckpt(tmp_path / "real.pt", DIM, seed=1)
    blind = load_ser_projector(speaker_blind(store), stats=store.stats("fold1"))  # an in-memory model: say its space
    block = probe_run(store.path, 1, {"real": tmp_path / "real.pt", "blind": blind}, seeds=[0, 1],
                      out_dir=tmp_path / "out", cfg={"steps": 200, "lr": 1e-2}, memo={"n_per_class": 4})
    assert [r["name"] for r in block["rows"]] == ["upstream", "real", "blind"]
    assert block["rows"][1]["source"]["input_space"] == "raw"  # as er_ckpt trained it, not the store's statistics
    saved = json.loads((tmp_path / "out" / "sid_probe.json").read_text())["sid_probe"]
    assert saved["rows"][0]["acc_mean"] == block["rows"][0]["acc_mean"]
    md = (tmp_path / "out" / "sid_probe.md").read_text()
    assert "SER downstream with Real SSL" in md and "SER downstream: blind" in md and "±" in md


def test_probe_refuses_a_model_of_another_space(store, tmp_path):
    er_ckpt(tmp_path / "x.pt", DIM + 1, stats=(np.zeros(DIM + 1), np.ones(DIM + 1)))
    with pytest.raises(UserError, match="17-dim"):
        probe_run(store, "fold1", {"real": tmp_path / "x.pt"}, seeds=[0])
    er_ckpt(tmp_path / "y.pt", DIM, upstream="hubert")
    with pytest.raises(UserError, match="hubert"):
        probe_run(store, "fold1", {"real": tmp_path / "y.pt"}, seeds=[0])


# ---------------------------------------------------------------------------- memorisation
class CopyGenerator:
    """A 'generator' that returns the fold's training utterances."""

    def __init__(self, store, fold="fold1"):
        self.store, self.labels = store, store.label_map
        self.train = store.split(fold, "train")

    def sample_class(self, c, n, seed):
        idx = [i for i in self.train if self.store.labels([i])[0] == c]
        rng = np.random.default_rng(seed)
        return [self.store.features(idx[j]) for j in rng.integers(0, len(idx), n)]


class FreshGenerator:
    """An honest generator: new utterances from the data's own process (the training speakers,
    the class), never one it has seen; exchangeable with the held-out dev utterances."""

    def __init__(self, store, fold="fold1"):
        self.labels = store.label_map
        self.speakers = sorted({int(store.index[i]["speaker"][3:]) for i in store.split(fold, "train")})

    def sample_class(self, c, n, seed):
        rng = np.random.default_rng(1000 + 10 * seed + c)
        return [utterance(rng, int(rng.choice(self.speakers)), c, int(rng.integers(8, 21))) for _ in range(n)]


def test_memorization_check_flags_a_copier_not_an_honest_generator(store):
    copy = check_generator(store, "fold1", CopyGenerator(store), n_per_class=8, max_queries=16)
    assert copy["flagged"]
    assert copy["pooled"]["ratio"] < 0.01 and copy["pooled"]["frac_closer_than_any_heldout"] == 1.0
    assert copy["frame"]["ratio"] < 0.01 and copy["frame"]["frac_closer_than_any_heldout"] == 1.0
    honest = check_generator(store, "fold1", FreshGenerator(store), n_per_class=8, max_queries=16)
    assert not honest["flagged"]
    for level in ("pooled", "frame"):
        assert 0.7 < honest[level]["ratio"] < 1.4 and honest[level]["frac_near_copy"] == 0.0

    # one sample in four copied: the median hardly moves, the near-copy share does
    class Partial:
        labels = store.label_map

        def sample_class(self, c, n, seed):
            a, b = CopyGenerator(store).sample_class(c, n, seed), FreshGenerator(store).sample_class(c, n, seed)
            return [a[k] if k % 4 == 0 else b[k] for k in range(n)]

    part = check_generator(store, "fold1", Partial(), n_per_class=8, max_queries=32)
    assert part["pooled"]["ratio"] > 0.5 and part["pooled"]["frac_near_copy"] == 0.25 and part["flagged"]
    assert honest["heldout_part"] == "dev" and honest["pooled"]["n_gen"] == 32

    # crops of training utterances: the pooled level may miss them, the frame level does not
    crops = [store.features(i)[2:7] for i in store.split("fold1", "train")[:20]]
    m = memorization_check(store, "fold1", crops, max_queries=10)
    assert m["frame"]["ratio"] < 0.01 and m["flagged"]
    # time-mean samples (GAN-MLP): the pooled level only
    means = store.pooled(store.split("fold1", "train")[:12])
    m = memorization_check(store, "fold1", means)
    assert "skipped" in m["frame"] and m["pooled"]["ratio"] < 0.01 and m["flagged"]


def test_probe_command_line(store, tmp_path, capsys):
    from s3prl_dd.cli import main

    er_ckpt(tmp_path / "real.pt", DIM, stats=store.stats("fold1"))
    main(["probe", "--store", str(store.path), "--fold", "1", "--er", f"real={tmp_path / 'real.pt'}",
          "--seeds", "0", "--steps", "50", "--out", str(tmp_path / "o")])
    assert (tmp_path / "o" / "sid_probe.json").is_file() and (tmp_path / "o" / "sid_probe.md").is_file()
    assert "SER downstream with Real SSL" in capsys.readouterr().out
    with pytest.raises(SystemExit) as e:
        main(["probe", "--store", str(store.path), "--fold", "1", "--er", "real"])
    assert e.value.code == 2 and "NAME=PATH" in capsys.readouterr().err
