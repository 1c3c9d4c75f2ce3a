import numpy as np
import pytest
import torch

from gan_fixtures import DIM, REP, gan_cfg
from s3prl_dd import cli
from s3prl_dd.features.store import FeatureStore
from s3prl_dd.gan.checkpoint import export_generator, load_generator
from s3prl_dd.gan.models import build_gan
from s3prl_dd.gan.realdata import step_generator
from s3prl_dd.gan.sampler import budget, parse_counts, sample_to_store, standing_stats
from s3prl_dd.protocol import LABELS
from s3prl_dd.utils import UserError

torch.set_num_threads(1)
PRIOR_COUNTS = [10, 5, 20, 5]  # neu, hap, ang, sad


def make_generator(path, arch="gan_att"):
    torch.manual_seed(0)
    cfg = gan_cfg(arch)["model"]
    g, _ = build_gan(cfg)
    for m in g.modules():  # non-trivial running stats, so eval-mode BatchNorm matters
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.running_mean.normal_()
            m.running_var.uniform_(0.5, 2)
    mean, std = torch.linspace(-3, 3, DIM), torch.linspace(0.5, 4, DIM)
    info = {"representation": REP, "dim": DIM, "upstream": "fbank_no_cmvn", "downsample_rate": 160,
            "fold": "fold1", "step": 7, "dev_uar": 0.5}
    export_generator(path, g, cfg, mean, std, LABELS, PRIOR_COUNTS, info)
    return path


@pytest.fixture(scope="module")
def gen_path(tmp_path_factory):
    return make_generator(tmp_path_factory.mktemp("g") / "generator.pt")


def test_budgets():
    prior = np.array(PRIOR_COUNTS) / 40
    assert budget(LABELS, prior, ppc=3) == {"neu": 3, "hap": 3, "ang": 3, "sad": 3}
    assert budget(LABELS, prior, total=40) == {"neu": 10, "hap": 5, "ang": 20, "sad": 5}
    b = budget(LABELS, prior, total=7)
    assert sum(b.values()) == 7 and all(abs(b[n] - 7 * p) < 1 for n, p in zip(LABELS, prior))
    assert budget(LABELS, prior, total=6, balance="balanced") == {"neu": 2, "hap": 2, "ang": 1, "sad": 1}
    assert budget(LABELS, prior, counts=parse_counts("neu=2,sad=1", LABELS)) == {"neu": 2, "hap": 0, "ang": 0, "sad": 1}
    with pytest.raises(UserError):
        budget(LABELS, prior, ppc=3, total=4)
    with pytest.raises(UserError):
        parse_counts("joy=3", LABELS)


def _counts(store):
    return {n: int((store.labels() == i).sum()) for n, i in LABELS.items()}


def test_store_counts_format_and_scale(gen_path, tmp_path):
    s = sample_to_store(gen_path, tmp_path / "prior", total=12, seed=1)
    assert _counts(s) == {"neu": 3, "hap": 2, "ang": 6, "sad": 1}  # 12 * prior, largest remainder
    s = FeatureStore.open(tmp_path / "prior")
    assert s.dim == DIM and s.representation == REP and s.meta["upstream"] == "fbank_no_cmvn"
    assert s.split("fold1", "train") == list(range(len(s))) and s.features(0).shape == (8, DIM)
    # raw upstream scale (dimension means run from -3 to 3), not GAN space
    x = np.stack([s.features(i) for i in range(len(s))])
    assert x[..., 0].mean() < -1.5 and x[..., -1].mean() > 1.5
    s = sample_to_store(gen_path, tmp_path / "counts", counts="neu=2,sad=4", seed=0)
    assert _counts(s) == {"neu": 2, "hap": 0, "ang": 0, "sad": 4}


def test_sampling_is_seeded_and_budgets_nest(gen_path, tmp_path):
    a = sample_to_store(gen_path, tmp_path / "a", ppc=6, seed=0)
    b = sample_to_store(gen_path, tmp_path / "b", ppc=6, seed=0)
    c = sample_to_store(gen_path, tmp_path / "c", ppc=6, seed=1)
    small = sample_to_store(gen_path, tmp_path / "small", ppc=2, seed=0)
    fa = {i: a.features(k) for k, i in enumerate(a.ids())}
    assert all(np.array_equal(fa[i], b.features(k)) for k, i in enumerate(b.ids()))
    assert not np.allclose(a.features(0), c.features(0))
    # (equal up to float rounding: convolution kernels differ with the batch size)
    assert all(np.allclose(fa[i], small.features(k), atol=1e-5) for k, i in enumerate(small.ids()))
    # the stored features are exactly the loaded generator's output for that class
    g = load_generator(gen_path)
    assert np.array_equal(a.labels(), np.repeat(np.arange(4), 6))
    e = torch.randn(64, g.noise_dim, generator=step_generator(0, "sample", 1))[:6]
    xs = g(torch.full((6,), 1), e) * 1.0
    assert not torch.allclose(xs, g(torch.full((6,), 1), e, standardized=True))
    assert np.allclose(np.stack([a.features(k) for k in range(6, 12)]), xs.numpy(), atol=1e-6)


def test_length_and_mlp_tiling(tmp_path):
    path = make_generator(tmp_path / "mlp.pt", "gan_mlp")
    s = sample_to_store(path, tmp_path / "tiled", ppc=1, seed=0, length=5)
    f = s.features(0)
    assert f.shape == (5, DIM) and np.allclose(f, f[0])  # one mean vector, tiled: same time mean
    s = sample_to_store(make_generator(tmp_path / "att.pt"), tmp_path / "crop", ppc=1, seed=0, length=3)
    assert s.features(0).shape == (3, DIM)


def test_cli_sample(gen_path, tmp_path, capsys):
    cli.main(["sample", "--generator", str(gen_path), "--out", str(tmp_path / "s"), "--total", "8",
              "--balance", "balanced", "--seed", "3"])
    assert '"n_items": 8' in capsys.readouterr().out
    assert _counts(FeatureStore.open(tmp_path / "s")) == {"neu": 2, "hap": 2, "ang": 2, "sad": 2}
    with pytest.raises(SystemExit):
        cli.main(["sample", "--generator", str(tmp_path / "missing.pt"), "--out", str(tmp_path / "x"), "--ppc", "1"])
    with pytest.raises(SystemExit):  # the output store exists already
        cli.main(["sample", "--generator", str(gen_path), "--out", str(tmp_path / "s"), "--ppc", "1"])


def test_cli_sample_truncation_is_recorded_and_scales_the_noise(gen_path, tmp_path):
    cli.main(["sample", "--generator", str(gen_path), "--out", str(tmp_path / "t"), "--ppc", "3", "--truncation", "0.5"])
    t = FeatureStore.open(tmp_path / "t")
    assert t.meta["truncation"] == 0.5
    ref = sample_to_store(gen_path, tmp_path / "ref", ppc=3, seed=0, truncation=0.5)
    assert np.array_equal(t.features(0), ref.features(0))
    assert not np.allclose(ref.features(0), sample_to_store(gen_path, tmp_path / "p", ppc=3, seed=0).features(0))
    with pytest.raises(SystemExit):
        cli.main(["sample", "--generator", str(gen_path), "--out", str(tmp_path / "u"), "--ppc", "1", "--truncation", "0"])


def _norms(g):
    return [m for m in g.generator.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]


def test_standing_stats_are_the_plain_average_of_the_generators_own_batches(gen_path):
    g = load_generator(gen_path)
    first, seen = _norms(g)[0], []
    hook = first.register_forward_hook(lambda m, inp, out: seen.append(inp[0].detach()))
    standing_stats(g, 3, batch_size=8)
    hook.remove()
    assert len(seen) == 3 and not g.generator.training
    dims = [d for d in range(seen[0].dim()) if d != 1]            # all but the channel axis
    assert torch.allclose(first.running_mean, torch.stack([x.mean(dims) for x in seen]).mean(0), atol=1e-5)
    again = standing_stats(load_generator(gen_path), 3, batch_size=8)  # seeded: one generator
    assert all(torch.equal(a.running_var, b.running_var) for a, b in zip(_norms(g), _norms(again)))


def test_sample_with_standing_stats_is_recorded_and_changes_only_that(gen_path, tmp_path):
    plain = sample_to_store(gen_path, tmp_path / "p", ppc=2, seed=0)
    off = sample_to_store(gen_path, tmp_path / "o", ppc=2, seed=0, standing=0)
    assert np.array_equal(plain.features(0), off.features(0)) and off.meta["standing_stats"] == 0
    cli.main(["sample", "--generator", str(gen_path), "--out", str(tmp_path / "s"), "--ppc", "2", "--standing-stats", "4"])
    st = FeatureStore.open(tmp_path / "s")
    assert st.meta["standing_stats"] == 4 and not np.allclose(st.features(0), plain.features(0))
    for bad in (-1, 1.5, True):
        with pytest.raises(UserError, match="standing_stats must be"):
            sample_to_store(gen_path, tmp_path / f"bad{bad}", ppc=1, standing=bad)
