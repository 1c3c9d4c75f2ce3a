"""Shapes, conditioning and contracts of the GAN models on tiny configs."""
import glob
from pathlib import Path

import pytest
import torch
from torch import nn

from s3prl_dd.gan import losses as L
from s3prl_dd.gan.data import crop_or_tile, fit_real
from s3prl_dd.gan.models import TimeSelfAttention, build_gan, count_parameters, size_on_disk_bytes
from s3prl_dd.gan.time_conv import TimeTokenAttention
from s3prl_dd.utils import UserError, load_yaml

ROOT = Path(__file__).resolve().parents[1]
BASE = dict(T=12, D=20, num_classes=3, noise_dim=5)
TINY = {
    "gan_cnn": dict(BASE, arch="gan_cnn", g_init_channels=4, g_channels=[4, 3], d_channels=[2] * 8,
                    d_strides=[2, 2, 1, 1, 1, 1, 1, 1]),
    "gan_att": dict(BASE, arch="gan_att", g_init_channels=4, g_channels=[4, 3], g_dilations=[1, 2],
                    attn_after=4, attn_dim=8, attn_heads=2, d_channels=[2] * 8,
                    d_strides=[[1, 2], 2, 1, 1, 1, 1, 1, 1], d_dilations=[1, 1, 1, 1, 2, 1, 2, 1]),
    "gan_mlp": dict(BASE, T=1, arch="gan_mlp", g_hidden=[16], d_hidden=[16, 8]),
    "gan_att_1d": dict(BASE, arch="gan_att", conv="1d", g_init_channels=4, g_channels=[4, 3], g_up=[2, 2],
                       g_dilations=[1, 2], attn_after=3, attn_dim=8, attn_heads=2, d_channels=[4, 4, 4],
                       d_strides=[2, 2, 1], d_kernel_size=[5, 3, 3]),
}
TINY["gan_att_1d_mean"] = dict(TINY["gan_att_1d"], g_mean_hidden=[16], d_mean_hidden=[16, 8])


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.mark.parametrize("arch", list(TINY))
def test_shapes_and_feature_maps(arch):
    cfg = TINY[arch]
    G, D = build_gan(cfg)
    y = torch.tensor([0, 1, 2, 1])
    z = G.sample_noise(y, torch.Generator().manual_seed(0))
    assert z.shape == (4, 3 + 5)
    x = G(z)
    assert x.shape == (4, cfg["T"], cfg["D"])
    critic, logits, feats = D(x, return_features=True)
    assert critic.shape == (4,) and logits.shape == (4, 3)
    n_layers = len(cfg.get("d_channels", cfg.get("d_hidden"))) + len(cfg.get("d_mean_hidden", []))
    assert len(feats) == n_layers and all(f.shape[0] == 4 for f in feats)
    assert len(D(x)) == 2


@pytest.mark.parametrize("arch", list(TINY))
def test_conditional_generation_depends_on_y(arch):
    G, _ = build_gan(TINY[arch])
    G.eval()  # BatchNorm running stats: each sample depends only on its own z
    e = torch.randn(4, 5)
    with torch.no_grad():
        a = G.generate(torch.zeros(4, dtype=torch.long), e)
        b = G.generate(torch.full((4,), 2), e)
        assert not torch.allclose(a, b)
        assert torch.equal(G.generate(torch.zeros(4, dtype=torch.long), e), a)  # and only on (y, e)


@pytest.mark.parametrize("arch", list(TINY))
def test_no_tanh_outputs_are_unbounded(arch):
    G, _ = build_gan(TINY[arch])
    assert not any(isinstance(m, nn.Tanh) for m in G.modules())
    last = [m for m in G.modules() if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Linear)) and m.weight.any()][-1]
    with torch.no_grad():
        last.weight.mul_(100.0)
        assert G(G.sample_noise(torch.arange(3))).abs().max() > 1.0


def test_sample_noise_one_hot_and_seeded():
    G, _ = build_gan(TINY["gan_cnn"])
    y = torch.tensor([2, 0, 1])
    z = G.sample_noise(y, torch.Generator().manual_seed(3))
    assert torch.equal(z[:, :3], torch.eye(3)[y])
    assert torch.equal(z, G.sample_noise(y, torch.Generator().manual_seed(3)))
    G.eval()
    with torch.no_grad():
        assert torch.equal(G.generate(y, z[:, 3:]), G(z))


def test_output_cropped_when_upsampling_does_not_divide():
    G, D = build_gan(dict(TINY["gan_cnn"], T=11, D=19, g_final_up=[1, 2]))
    x = G(G.sample_noise(torch.arange(3)))
    assert x.shape == (3, 11, 19)
    assert D(x)[0].shape == (3,)
    with pytest.raises(ValueError):
        D(torch.zeros(3, 12, 19))


def test_att_has_one_time_attention_after_the_fourth_conv():
    G, _ = build_gan(TINY["gan_att"])
    body = list(G.body)
    attn = [i for i, m in enumerate(body) if isinstance(m, TimeSelfAttention)]
    assert len(attn) == 1
    convs_before = [m for m in body[: attn[0]] if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
    assert len(convs_before) == 4
    # dilated generator convs
    assert any(m.dilation == (2, 2) for m in body if isinstance(m, nn.Conv2d))
    cnn, _ = build_gan(TINY["gan_cnn"])
    assert not any(isinstance(m, TimeSelfAttention) for m in cnn.modules())


def test_1d_convs_treat_feature_units_as_unordered_channels():
    cfg = TINY["gan_att_1d"]
    G, D = build_gan(cfg)
    assert not any(isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)) for m in [*G.modules(), *D.modules()])
    body = list(G.body)
    attn = [i for i, m in enumerate(body) if isinstance(m, TimeTokenAttention)]
    assert len(attn) == 1
    assert len([m for m in body[: attn[0]] if isinstance(m, (nn.Conv1d, nn.ConvTranspose1d))]) == 3
    # Permuting the D units of the input, and the first conv's input channels alike, leaves the
    # critic unchanged: no kernel assumes neighbouring units are related (a 2-D kernel does).
    x, perm = torch.randn(2, cfg["T"], cfg["D"]), torch.randperm(cfg["D"])
    before = D(x)[0]
    with torch.no_grad():
        D.layers[0][0].weight.copy_(D.layers[0][0].weight[:, perm])
    assert torch.allclose(D(x[..., perm])[0], before, atol=1e-5)
    with pytest.raises(UserError, match="g_final_up"):
        build_gan(dict(cfg, g_final_up=2))
    with pytest.raises(UserError, match="conv"):
        build_gan(dict(cfg, conv="3d"))
    with pytest.raises(UserError, match="g_up"):
        build_gan(dict(cfg, g_up=[[1, 2], 2]))


def test_mean_path_makes_the_time_mean_and_shows_it_to_the_critic():
    cfg = TINY["gan_att_1d_mean"]
    G, D = build_gan(cfg)
    G.eval()  # BatchNorm running stats, so mean_head(z) is per sample
    z = G.sample_noise(torch.tensor([0, 1, 2, 1]))
    with torch.no_grad():
        x = G(z)
        # the conv stack only adds residuals: the time mean is the MLP head's output exactly
        assert torch.allclose(x.mean(1), G.mean_head(z).squeeze(1), atol=1e-5)
        assert x.std(1).min() > 0  # and the frames still vary
    # the critic reads the time mean through its own layers: shifting it moves the critic, and
    # those layers get gradients
    real = torch.randn(4, cfg["T"], cfg["D"])
    critic = D(real)[0]
    assert not torch.allclose(critic, D(real + 0.5)[0])
    critic.sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in D.mean_layers.parameters())
    # off by default, with the state dict of a model saved before the option existed
    plain = {k: v for k, v in cfg.items() if not k.endswith("_mean_hidden")}
    for a, b in zip(build_gan(plain), build_gan(dict(plain, g_mean_hidden=[], d_mean_hidden=[]))):
        assert a.state_dict().keys() == b.state_dict().keys()
    assert build_gan(plain)[0].mean_head is None
    with pytest.raises(UserError, match="conv=1d"):
        build_gan(dict(TINY["gan_att"], g_mean_hidden=[16]))


def test_discriminator_has_no_batchnorm_and_gp_runs():
    for arch in TINY:
        G, D = build_gan(TINY[arch])
        assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in D.modules())
        real = torch.randn(4, TINY[arch]["T"], 20)
        fake = G(G.sample_noise(torch.arange(4) % 3))
        gp = L.gradient_penalty(lambda h: D(h)[0], real, fake, torch.Generator().manual_seed(0))
        gp.backward()
        assert torch.isfinite(gp)
        assert all(p.grad is not None for p in D.layers.parameters())
        # per-sample critic: a sample's value does not depend on the rest of the batch
        assert torch.allclose(D(real)[0][:1], D(real[:1])[0], atol=1e-5)


def test_build_gan_rejects_bad_configs():
    with pytest.raises(UserError, match="arch"):
        build_gan(dict(TINY["gan_cnn"], arch="gan_rnn"))
    with pytest.raises(UserError, match="g_chanels"):
        build_gan(dict(TINY["gan_cnn"], g_chanels=[4]))
    with pytest.raises(UserError, match="attn_after"):
        build_gan(dict(TINY["gan_att"], attn_after=9))
    with pytest.raises(UserError, match="d_strides"):
        build_gan(dict(TINY["gan_cnn"], d_strides=[2, 2]))


def test_sizes():
    G, D = build_gan({"model": TINY["gan_mlp"]})  # a whole config works too
    n = count_parameters(G)
    assert n == (8 * 16 + 16) + 2 * 16 + (16 * 20 + 20)  # Linear, BatchNorm affine, Linear
    assert 4 * n < size_on_disk_bytes(G) < 4 * n + 20_000


def test_crop_or_tile():
    x = torch.arange(10.0).unsqueeze(1).repeat(1, 2)  # (L=10, D=2), frame t holds t
    crop = crop_or_tile(x, 4, torch.Generator().manual_seed(0))
    assert crop.shape == (4, 2) and torch.equal(crop[:, 0], crop[0, 0] + torch.arange(4.0))
    assert torch.equal(crop, crop_or_tile(x, 4, torch.Generator().manual_seed(0)))
    starts = {int(crop_or_tile(x, 4, torch.Generator().manual_seed(s))[0, 0]) for s in range(30)}
    assert starts == set(range(7))  # every valid crop can be drawn
    short = x[:3]
    assert torch.equal(crop_or_tile(short, 7)[:, 0], torch.tensor([0.0, 1, 2, 0, 1, 2, 0]))
    assert torch.equal(crop_or_tile(short, 7, mode="reflect")[:, 0], torch.tensor([0.0, 1, 2, 2, 1, 0, 0]))
    assert torch.equal(crop_or_tile(x, 10), x)


def test_fit_real_uses_the_time_mean_for_mlp():
    x = torch.randn(17, 20)
    assert torch.allclose(fit_real(x, TINY["gan_mlp"]), x.mean(0, keepdim=True))
    assert fit_real(x, TINY["gan_cnn"]).shape == (12, 20)


def test_shipped_configs_are_complete():
    paths = sorted(glob.glob(str(ROOT / "downstream_configs/gan/*.yaml")))
    assert {Path(p).stem for p in paths} >= {"gan_cnn_paper", "gan_att_paper", "gan_cnn_cpu",
                                             "gan_att_cpu", "gan_att_ssl_cpu", "gan_att_ssl_paper", "gan_mlp_cpu",
                                             "gan_cnn_ssl_cpu"}
    for path in paths:
        cfg = load_yaml(path)
        assert set(cfg["loss"]) >= {"lambda_gp", "lambda_cls_real", "lambda_cls_fake", "lambda_fm",
                                    "lambda_div", "lambda_sml", "tau"}
        assert set(cfg["optim"]) >= {"lr_g", "lr_d", "betas", "n_critic", "batch_size"}
        assert set(cfg["train"]) >= {"steps", "eval_every", "save_every", "seed"}
        if "paper" in path:
            continue  # 25 M parameters: built by benchmarks/gan_sizes.py, not here
        G, D = build_gan(cfg)
        x = G(G.sample_noise(torch.arange(2) % cfg["model"]["num_classes"]))
        assert x.shape == (2, cfg["model"]["T"], cfg["model"]["D"]) and len(D(x, True)[2]) >= 2


def test_ssl_gan_cnn_is_the_ssl_gan_att_without_its_attention():
    # the paper's GAN-CNN is its GAN-ATT minus the attention layer; the CPU configs must not drift apart
    att, cnn = (load_yaml(ROOT / f"downstream_configs/gan/{n}_ssl_cpu.yaml") for n in ("gan_att", "gan_cnn"))
    assert (att["model"].pop("arch"), cnn["model"].pop("arch")) == ("gan_att", "gan_cnn")
    assert {k: v for k, v in att["model"].items() if not k.startswith("attn_")} == cnn["model"]
    assert {k: v for k, v in att.items() if k != "model"} == {k: v for k, v in cnn.items() if k != "model"}


@pytest.mark.parametrize("name, lo_mb, hi_mb", [("gan_cnn_paper", 80, 120), ("gan_att_paper", 45, 75),
                                                   ("gan_att_ssl_paper", 45, 75)])
def test_paper_configs_match_table1_sizes(name, lo_mb, hi_mb):
    # Table 1: GAN-CNN 0.1 GB, GAN-ATT 0.06 GB. Built on the meta device: shapes, no memory.
    with torch.device("meta"):
        G, D = build_gan(load_yaml(ROOT / f"downstream_configs/gan/{name}.yaml"))
    mb = 4 * (count_parameters(G) + count_parameters(D)) / 1e6
    assert lo_mb < mb < hi_mb
