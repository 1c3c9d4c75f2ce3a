"""s3prl_dd.distill: objectives against hand values, budgets, determinism, save/load, DM."""
import numpy as np
import pytest
import torch
import yaml

from benchmark_scripts import load_benchmark
from gan_fixtures import DIM, REP, gan_cfg, tiny_pool, tiny_store
from s3prl_dd import cli
from s3prl_dd.distill import SOURCES, TrainingSet, make_training_set, source_config
from s3prl_dd.distill.common import CONFIG_DIR, fold_train
from s3prl_dd.gan.sampler import class_noise
from s3prl_dd.distill.dm import DM_DEFAULTS
from s3prl_dd.distill.herding import GAN_HERDING_DEFAULTS, GAN_IID_DEFAULTS
from s3prl_dd.distill.latent import LATENT_DEFAULTS, gradient_matching_loss, linear_er_params
from s3prl_dd.distill.objectives import (distribution_matching_loss, gradient_distance, herding_select,
                                         kcenter_select, latent_norm_prior)
from s3prl_dd.features.store import FeatureStore
from s3prl_dd.gan.checkpoint import export_generator, load_generator
from s3prl_dd.gan.models import build_gan
from s3prl_dd.gan.sampler import generate_class
from s3prl_dd.protocol import LABELS
from s3prl_dd.utils import UserError

torch.set_num_threads(1)
FAST = {"dm": {"iterations": 40, "eval_embedders": 4, "embed_width": 32},
        "gan_latent": {"iterations": 30, "eval_embedders": 4, "embed_width": 32, "lambda_gm": 0.01},
        "gan_herding": {"candidates_per_point": 10}}


# ---------------------------------------------------------------------------- objectives (hand values)
def test_distribution_matching_loss_hand_value():
    real = torch.tensor([[1.0, 0.0], [3.0, 0.0], [0.0, 2.0]])
    ry = torch.tensor([0, 0, 1])
    syn = torch.tensor([[1.0, 1.0], [0.0, 0.0]], requires_grad=True)
    sy = torch.tensor([0, 1])
    # class 0: (2, 0) vs (1, 1) -> 1 + 1; class 1: (0, 2) vs (0, 0) -> 4
    loss = distribution_matching_loss(real, ry, syn, sy)
    assert loss.item() == pytest.approx(6.0)
    loss.backward()  # d/dsyn0 = -2 (mu_r - s0) = (-2, 2); d/dsyn1 = (0, -4)
    assert torch.allclose(syn.grad, torch.tensor([[-2.0, 2.0], [0.0, -4.0]]))
    with pytest.raises(ValueError):  # a class absent from the real set has no mean
        distribution_matching_loss(real, ry, syn, torch.tensor([0, 3]))


def test_gradient_distance_hand_value():
    gr = [torch.tensor([[1.0, 0.0], [0.0, 1.0]]), torch.tensor([1.0, 0.0])]
    gs = [torch.tensor([[2.0, 0.0], [1.0, 0.0]]), torch.tensor([0.0, 3.0])]
    # rows: cos 1 -> 0, cos 0 -> 1; the bias counts 0 as in DC, or 1 - 0 = 1 with include_bias
    assert gradient_distance(gr, gs).item() == pytest.approx(1.0, abs=1e-5)
    assert gradient_distance(gr, gs, include_bias=True).item() == pytest.approx(2.0, abs=1e-5)
    conv_r, conv_s = torch.tensor([[[1.0, 0.0]], [[0.0, 1.0]]]), torch.tensor([[[-1.0, 0.0]], [[0.0, 1.0]]])
    assert gradient_distance([conv_r], [conv_s]).item() == pytest.approx(2.0, abs=1e-5)  # cos -1 -> 2


def test_latent_prior_hand_value():
    assert latent_norm_prior(torch.tensor([[2.0, 0, 0, 0]])).item() == pytest.approx(0.0)
    assert latent_norm_prior(torch.tensor([[4.0, 0, 0, 0], [0.0, 0, 0, 0]])).item() == pytest.approx(1.0)


def test_herding_and_kcenter_hand_values():
    # mean 5: t=1 4 and 6 tie at 1 -> 4 (lowest index); t=2 (4+6)/2 = 5 exact; t=3 0 and 10 tie -> 0
    assert herding_select(np.array([[0.0], [10.0], [4.0], [6.0]]), 4) == [2, 3, 0, 1]
    assert herding_select(np.array([[0.0], [10.0], [4.0], [6.0]]), 2) == [2, 3]
    assert herding_select(np.array([[0.0], [10.0]]), 5) == [0, 1]  # k > N: all
    assert herding_select(np.array([[0.0], [10.0], [4.0]]), 1, target=[9.0]) == [1]
    # mean 3.75 -> start at 5; farthest 0; then 9; then 1
    assert kcenter_select(np.array([[0.0], [1.0], [5.0], [9.0]]), 4) == [2, 0, 3, 1]


def test_gradient_matching_is_zero_for_the_real_batch_itself():
    gen = torch.Generator().manual_seed(0)
    params = linear_er_params(5, 2, gen, width=4)
    x, y = torch.randn(6, 5, generator=gen), torch.tensor([0, 0, 0, 1, 1, 1])
    real = {0: x[:3], 1: x[3:]}
    syn = x.clone().requires_grad_(True)
    d = gradient_matching_loss(params, real, syn, y)
    assert d.item() == pytest.approx(0.0, abs=5e-3)  # only DC's 1e-6 guard in the cosine
    d2 = gradient_matching_loss(params, real, syn + torch.randn(6, 5, generator=gen), y)
    d2.backward()
    assert d2.item() > 0.1 and syn.grad is not None and syn.grad.abs().sum() > 0


# ---------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def env(tmp_path_factory):
    root = tmp_path_factory.mktemp("distill")
    store = tiny_store(root / "store")
    gens = {}
    for arch in ("gan_mlp", "gan_att"):
        torch.manual_seed(0)
        cfg = gan_cfg(arch)["model"]
        g, _ = build_gan(cfg)
        mean, std = store.stats("fold1")
        info = {"representation": REP, "dim": DIM, "upstream": "fbank_no_cmvn", "downsample_rate": 160,
                "fold": "fold1", "step": 1}
        export_generator(root / f"{arch}.pt", g, cfg, torch.from_numpy(mean), torch.from_numpy(std), LABELS,
                         [8, 8, 8, 8], info)
        gens[arch] = str(root / f"{arch}.pt")
    pool = tiny_pool(store, root / "pool")
    return {"root": root, "store": store, "gen": gens, "pool": str(pool)}


def _make(env, source, ppc, seed=0, **kw):
    arch = kw.pop("arch", "gan_mlp")
    gen = kw.pop("generator", env["gen"][arch] if source.startswith("gan") else None)
    cfg = kw.pop("cfg", FAST.get(source))
    return make_training_set(source, env["store"], "fold1", ppc, seed, generator=gen, cfg=cfg, **kw)


def _feats(ts):
    return ts.pooled()


# ---------------------------------------------------------------------------- budgets, balance, scale
@pytest.mark.parametrize("source", SOURCES)
def test_budget_class_balance_and_raw_scale(env, source):
    store = env["store"]
    ts = _make(env, source, 2)
    assert ts.counts(4) == [2, 2, 2, 2] and len(ts.ids) == 8 == len(set(ts.ids))
    assert ts.labels.dtype == np.int64 and ts.dim == DIM and ts.artifact_bytes > 0
    # raw upstream scale: the tiny store's features sit around 5 with spread 3 (not standardised)
    assert abs(float(_feats(ts).mean()) - float(store.pooled().mean())) < 3.0
    assert _feats(ts).std() > 0.5
    ed = ts.to_erdata()
    assert len(ed) == 8 and ed.dim == DIM


@pytest.mark.parametrize("source", ["random", "herding", "kcenter"])
def test_real_subsets_come_from_the_train_part(env, source):
    store = env["store"]
    ts = _make(env, source, 3)
    train = set(store.ids(store.split("fold1", "train")))
    assert set(ts.ids) <= train
    for i, f in zip(ts.info["store_positions"], ts.features):
        assert np.array_equal(f, store.features(i))
    assert np.array_equal(ts.labels, store.labels(ts.info["store_positions"]))


def test_short_classes_take_everything_and_say_so(env):
    ft = fold_train(env["store"], "fold1")
    have = [len(ft.of_class(c)) for c in ft.classes]
    ts = _make(env, "random", 50)
    assert ts.counts(4) == have
    assert ts.info["short_classes"] == {n: h for n, h in zip(LABELS, have)}


# ---------------------------------------------------------------------------- determinism
@pytest.mark.parametrize("source", ["random", "gan", "gan_herding", "gan_latent", "dm"])
def test_seeded_sources_are_deterministic(env, source):
    a, b, c = _make(env, source, 2, 0), _make(env, source, 2, 0), _make(env, source, 2, 1)
    assert np.array_equal(_feats(a), _feats(b)) and a.ids == b.ids
    assert not np.array_equal(_feats(a), _feats(c))


def test_herding_ignores_the_seed_and_nests(env):
    assert np.array_equal(_feats(_make(env, "herding", 2, 0)), _feats(_make(env, "herding", 2, 5)))
    small, big = _make(env, "herding", 1), _make(env, "herding", 3)
    assert set(small.info["store_positions"]) <= set(big.info["store_positions"])
    r1, r3 = _make(env, "random", 1, 4), _make(env, "random", 3, 4)
    assert set(r1.info["store_positions"]) <= set(r3.info["store_positions"])


def test_gan_source_is_the_sampler_set_and_herding_beats_iid(env):
    g = load_generator(env["gen"]["gan_att"])
    ts = _make(env, "gan", 3, 2, arch="gan_att")
    for c in range(4):
        ref = generate_class(g, c, 3, 2).numpy()
        got = np.stack([f for f, y in zip(ts.features, ts.labels) if y == c])
        assert np.allclose(got, ref, atol=1e-5)
        assert torch.equal(class_noise(g.noise_dim, c, 3, 2), class_noise(g.noise_dim, c, 10, 2)[:3])
    h = _make(env, "gan_herding", 3, 2, arch="gan_att")
    for d in h.info["sq_dist_to_real_mean"].values():
        assert d["herded"] <= d["iid"] + 1e-6
    hp = _make(env, "gan_herding", 2, 0, pool=env["pool"], cfg={"candidates_per_point": 5, "space": "pool"})
    assert hp.counts(4) == [2, 2, 2, 2]


def test_truncation_scales_the_plain_noise_and_pulls_samples_together(env):
    plain, half = (_make(env, "gan", 6, 1, arch="gan_att", cfg=c) for c in (None, {"truncation": 0.5}))
    assert np.allclose(half.latents, 0.5 * plain.latents) and half.info["truncation"] == 0.5
    assert np.array_equal(plain.labels, half.labels)
    for c in range(4):  # within a class, a smaller noise scale gives closer samples
        spread = [np.stack([f for f, y in zip(ts.features, ts.labels) if y == c]).mean(1).std(0).mean()
                  for ts in (plain, half)]
        assert spread[1] < spread[0]
    same = _make(env, "gan", 6, 1, arch="gan_att", cfg={"truncation": 1})
    assert all(np.array_equal(a, b) for a, b in zip(same.features, plain.features))
    for bad in (0, 1.5, "x"):
        with pytest.raises(UserError, match="truncation must be"):
            _make(env, "gan", 1, 0, cfg={"truncation": bad})


def test_standing_stats_resample_the_same_noise_and_leave_a_given_generator_alone(env):
    plain = _make(env, "gan", 3, 1, arch="gan_att")
    standing = _make(env, "gan", 3, 1, arch="gan_att", cfg={"standing_stats": 2})
    assert np.array_equal(plain.latents, standing.latents) and standing.info["standing_stats"] == 2
    assert "standing_stats" not in plain.info
    assert not np.allclose(_feats(plain), _feats(standing))
    again = _make(env, "gan", 3, 1, arch="gan_att", cfg={"standing_stats": 2})  # once per generator file
    assert np.array_equal(_feats(again), _feats(standing))
    g = load_generator(env["gen"]["gan_att"])
    before = {k: v.clone() for k, v in g.generator.state_dict().items()}
    loaded = _make(env, "gan", 3, 1, arch="gan_att", generator=g, cfg={"standing_stats": 2})
    assert np.allclose(_feats(loaded), _feats(standing), atol=1e-6)
    assert all(torch.equal(v, g.generator.state_dict()[k]) for k, v in before.items())
    with pytest.raises(UserError, match="standing_stats must be"):
        _make(env, "gan", 1, 0, cfg={"standing_stats": -2})


# ---------------------------------------------------------------------------- latents: save / load
@pytest.mark.parametrize("arch", ["gan_mlp", "gan_att"])
def test_latent_save_load_regenerates_identical_features(env, arch, tmp_path):
    ts = _make(env, "gan_latent", 2, 0, arch=arch, pool=env["pool"])
    assert ts.info["pool_used"] and ts.latents.shape == (8, load_generator(env["gen"][arch]).noise_dim)
    ts.save(tmp_path / "set.pt")
    obj = torch.load(tmp_path / "set.pt", weights_only=True)
    assert "features" not in obj and "latents" in obj  # the artifact is generator + latents
    back = TrainingSet.load(tmp_path / "set.pt")
    assert back.source == "gan_latent" and np.array_equal(back.labels, ts.labels) and back.ids == ts.ids
    for x, y in zip(back.features, ts.features):
        assert np.array_equal(x, y)
    obj["generator"] = env["gen"]["gan_att" if arch == "gan_mlp" else "gan_mlp"]
    torch.save(obj, tmp_path / "bad.pt")
    with pytest.raises(UserError):  # another generator than the one the latents were learned on
        TrainingSet.load(tmp_path / "bad.pt")

def test_feature_sets_save_load(env, tmp_path):
    for source in ("dm", "random"):
        ts = _make(env, source, 2)
        ts.save(tmp_path / f"{source}.pt")
        back = TrainingSet.load(tmp_path / f"{source}.pt")
        assert np.array_equal(back.pooled(), ts.pooled()) and back.is_pooled == ts.is_pooled


# ---------------------------------------------------------------------------- objectives improve
def test_dm_improves_its_own_objective(env):
    ts = _make(env, "dm", 3)
    assert ts.is_pooled and ts.info["objective_after"] < 0.5 * ts.info["objective_before"]
    fr = _make(env, "dm", 2, cfg={**FAST["dm"], "frames": True, "frames_T": 6, "real_frames": 4})
    assert not fr.is_pooled and fr.features[0].shape == (6, DIM)
    assert fr.info["objective_after"] < fr.info["objective_before"]


def test_gan_latent_improves_its_objective_and_the_prior_holds_latents(env):
    cfg = {**FAST["gan_latent"], "iterations": 60}
    ts = _make(env, "gan_latent", 3, pool=env["pool"], cfg=cfg)
    b, a = ts.info["objective_before"], ts.info["objective_after"]
    assert a["dm_eval"] < b["dm_eval"] and a["pool"] < b["pool"]
    free = _make(env, "gan_latent", 3, pool=env["pool"], cfg={**cfg, "lambda_prior": 0.0})
    held = _make(env, "gan_latent", 3, pool=env["pool"], cfg={**cfg, "lambda_prior": 100.0})
    prior = lambda t: float(latent_norm_prior(torch.from_numpy(t.latents)))
    assert prior(held) < prior(free)
    assert prior(held) < 0.1  # ~ its N(0, I) value at init (d = 6)


# ---------------------------------------------------------------------------- errors, configs, CLI
def test_refuses_missing_generator_unknown_options_and_other_folds(env):
    with pytest.raises(UserError):
        make_training_set("gan", env["store"], "fold1", 2, 0)
    with pytest.raises(UserError):
        make_training_set("dm", env["store"], "fold1", 2, 0, cfg={"itrations": 3})
    with pytest.raises(UserError):
        make_training_set("nope", env["store"], "fold1", 2, 0)
    with pytest.raises(UserError):  # distilled from fold1: has seen fold2's test speakers
        make_training_set("gan", env["store"], "fold2", 2, 0, generator=env["gen"]["gan_mlp"])
    with pytest.raises(UserError):
        make_training_set("gan_latent", env["store"], "fold2", 2, 0, generator=env["gen"]["gan_mlp"],
                          pool=env["pool"])


def test_shipped_configs_equal_the_defaults():
    assert yaml.safe_load(open(CONFIG_DIR / "dm.yaml")) == DM_DEFAULTS
    assert yaml.safe_load(open(CONFIG_DIR / "latent.yaml")) == LATENT_DEFAULTS
    assert yaml.safe_load(open(CONFIG_DIR / "herding.yaml")) == {"gan": GAN_IID_DEFAULTS, "gan_herding": GAN_HERDING_DEFAULTS}
    assert source_config("dm", overrides="iterations=7")["iterations"] == 7
    with pytest.raises(UserError):
        source_config("dm", overrides="iteration=7")


def test_cli_distill_set_writes_a_store(env, tmp_path, capsys):
    out = tmp_path / "set"
    cli.main(["distill-set", "--source", "gan_latent", "--store", str(env["store"].path), "--fold", "fold1",
              "--ppc", "2", "--generator", env["gen"]["gan_att"], "--seed", "0", "--out", str(out),
              "-o", "iterations=3,,eval_embedders=2", "--device", "cpu"])
    assert '"n_items": 8' in capsys.readouterr().out
    s = FeatureStore.open(out)
    assert len(s) == 8 and s.meta["source"] == "gan_latent" and s.meta["counts"] == {n: 2 for n in LABELS}
    assert s.dim == DIM and s.representation == REP and s.split("fold1", "train") == list(range(8))
    back = TrainingSet.load(out / "distill_set.pt")
    for i in range(8):
        assert np.array_equal(s.features(i), back.features[i])
    with pytest.raises(SystemExit):  # never overwrite a store
        cli.main(["distill-set", "--source", "random", "--store", str(env["store"].path), "--fold", "1",
                  "--ppc", "2", "--out", str(out)])


def test_benchmark_script_runs_and_resumes(env, tmp_path, capsys):
    bench = load_benchmark("distill_sources")
    out = tmp_path / "r.json"
    args = ["--store", str(env["store"].path), "--folds", "1", "--ppc", "1,2", "--seeds", "0",
            "--sources", "random,dm,gan_latent@nopool", "--generator", env["gen"]["gan_mlp"],
            "--set", "dm.iterations=3,,gan_latent@nopool.iterations=2,,gan_latent@nopool.lambda_pool=0",
            "-o", "runner.total_steps=4,,runner.eval_step=2,,runner.log_step=2", "--out", str(out)]
    assert bench.main(args) == 0
    import json

    r = json.loads(out.read_text())
    assert len(r["runs"]) == 1 + 3 * 2  # full + 3 sources x 2 budgets
    assert set(r["summary"]) == {"full", "random", "dm", "gan_latent@nopool"}
    assert "vs_random" in r["summary"]["dm"]["2"]
    assert bench.main(args) == 0  # resumes: nothing left to run
    assert "resuming: 7 runs" in capsys.readouterr().out


def test_random_and_dm_cells_of_one_seed_share_their_subset(env):
    """The pipeline builds every cell's set through s3prl_dd.distill: DM with no iterations is its
    starting point, which must be the very subset the `random` cell of the same seed trains on."""
    from s3prl_dd.pipeline import cells

    ctx = {"cfg": {"distill": {"dm": {"iterations": 0, "eval_embedders": 2, "embed_width": 8}},
                   "per_downstream": {}}, "generators": {}, "pools": {}}
    cell = {"fold": 1, "seed": 3, "downstream": "linear", "arch": None, "variant": None, "gan_seed": None,
            "ppc": 2, "balance": "balanced"}
    rand = cells.training_set({**cell, "source": "random"}, ctx, env["store"], pooled=True)
    dm0 = cells.training_set({**cell, "source": "dm"}, ctx, env["store"], pooled=True)
    np.testing.assert_allclose(dm0.features, rand.features, rtol=1e-5, atol=1e-5)
    assert np.array_equal(dm0.labels, rand.labels)
    other = cells.training_set({**cell, "source": "random", "seed": 4}, ctx, env["store"], pooled=True)
    assert not np.allclose(other.features, rand.features)
    # prior-following budgets: per-class counts through the same function
    imb = cells.training_set({**cell, "source": "random", "balance": "imbalanced", "ppc": 2}, ctx, env["store"], pooled=True)
    assert len(imb) == 8
