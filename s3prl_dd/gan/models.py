"""Generators and discriminators of the GAN distiller (paper Sec. 4 and 5.1), sized by config.

Data contract. Every model sees standardised SSL features as (B, T, D) tensors, time kept; the
generator's noise is z = [one-hot(y) ⊕ e], e ~ N(0, I) of ``noise_dim``.
- ``gan_cnn``: 2D convolutions over the (1, T, D) map (paper's GAN-CNN).
- ``gan_att``: the same with fewer channels, dilated convs and one self-attention over time after
  the 4th generator conv layer (paper's GAN-ATT).
- ``model.conv: 1d`` (beyond the paper, ``s3prl_dd.gan.time_conv``): GAN-CNN / GAN-ATT with the
  D feature units as channels and convolutions over time only, for SSL features whose units
  have no order; optionally with a mean path (``g_mean_hidden`` / ``d_mean_hidden``).
- ``gan_mlp``: beyond the paper, for the SUPERB ER model, which is linear in the utterance's
  time mean: the generator makes one D-dim vector, returned as (B, 1, D) (T = 1 features).

Real features of variable length (what the trainer must do; helpers in ``s3prl_dd.gan.data``).
The GAN works on a fixed T, and it must never see padding: padded frames would teach the
generator to produce zeros and shift every time mean. So, per utterance (L, D):
- L > T: a random T-frame crop, redrawn every time the utterance is batched;
- L < T: the utterance is tiled (repeated) to T frames, which keeps its time mean, or
  mirror-tiled (``mode="reflect"``), which also avoids a jump at the seams;
- ``gan_mlp``: no cropping at all; the real input is the whole utterance's time mean (1, D).

Norms. The discriminator uses GroupNorm(1, C), i.e. LayerNorm over (C, T, D) per sample: the
WGAN-GP penalty is a per-sample gradient, which BatchNorm would couple across the batch. The
generator uses BatchNorm as in the paper; it has no tanh, since features are standardised and
not bounded to [-1, 1].
"""
from __future__ import annotations

import io
import math
from typing import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from s3prl_dd.utils import UserError, default, exists

ARCHS = ("gan_cnn", "gan_att", "gan_mlp")
LEAK = 0.2


def _pairs(value, n: int, what: str) -> list[tuple[int, int]]:
    """A scalar, or a list of n entries each a scalar or a [t, d] pair -> n (t, d) pairs."""
    value = [value] * n if isinstance(value, int) else list(value)
    if len(value) != n:
        raise UserError(f"model.{what}: expected {n} entries (one per layer), got {len(value)}")
    return [(int(v), int(v)) if isinstance(v, int) else (int(v[0]), int(v[1])) for v in value]


def ints_per_layer(value, n: int, what: str) -> list[int]:
    """A scalar, or a list of n integers (one per layer) -> n integers."""
    value = [value] * n if isinstance(value, int) else list(value)
    if len(value) != n or not all(isinstance(v, int) for v in value):
        raise UserError(f"model.{what}: expected {n} integers (one per layer), got {value}")
    return [int(v) for v in value]


def _conv_out(length: int, kernel: int, stride: int, pad: int, dilation: int) -> int:
    return (length + 2 * pad - dilation * (kernel - 1) - 1) // stride + 1


# ============================================================================ generators
class ConditionalGenerator(nn.Module):
    """Noise handling shared by all generators: ``forward(z)`` maps z = [one-hot(y) ⊕ e]."""

    def __init__(self, T: int, D: int, num_classes: int, noise_dim: int):
        super().__init__()
        self.T, self.D, self.num_classes, self.noise_dim = T, D, num_classes, noise_dim

    @property
    def z_dim(self) -> int:
        return self.num_classes + self.noise_dim

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def make_z(self, y: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        onehot = F.one_hot(y.long(), self.num_classes).to(e.dtype)
        return torch.cat([onehot, e], dim=1)

    def sample_noise(self, y: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """z for labels y (B,), with e drawn from ``generator`` (on its device, then moved)."""
        device = generator.device if exists(generator) else y.device
        e = torch.randn(y.shape[0], self.noise_dim, generator=generator, device=device)
        return self.make_z(y.to(self.device), e.to(self.device))

    def generate(self, y: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        """Features (B, T, D) for labels y (B,) and noise parts e (B, noise_dim)."""
        return self(self.make_z(y.to(self.device), e.to(self.device)))


class TimeSelfAttention(nn.Module):
    """One multi-head self-attention over time on a (B, C, T, F) map, residual.

    Each time step's token is its (C × F) slice, projected to ``dim``. No positional encoding:
    the generator's first layer is a dense projection with separate weights per (t, f) cell,
    so absolute position is already in the map.
    """

    def __init__(self, channels: int, freq: int, dim: int, heads: int):
        super().__init__()
        width = channels * freq
        self.norm = nn.LayerNorm(width)
        self.to_tokens = nn.Linear(width, dim)
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.from_tokens = nn.Linear(dim, width)
        # Start as the identity so inserting attention does not perturb the conv stack early on.
        nn.init.zeros_(self.from_tokens.weight)
        nn.init.zeros_(self.from_tokens.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, t, f = x.shape
        tokens = self.to_tokens(self.norm(x.permute(0, 2, 1, 3).reshape(b, t, c * f)))
        mixed, _ = self.attn(tokens, tokens, tokens, need_weights=False)
        return x + self.from_tokens(mixed).reshape(b, t, c, f).permute(0, 2, 1, 3)


def _upconv(c_in: int, c_out: int, ut: int, ud: int) -> nn.ConvTranspose2d:
    """Transposed conv upsampling by exactly (ut, ud): kernel u + 2p, stride u, padding p."""
    pt, pd = max(1, ut // 2), max(1, ud // 2)
    return nn.ConvTranspose2d(c_in, c_out, (ut + 2 * pt, ud + 2 * pd), (ut, ud), (pt, pd))


def _bn_act(channels: int) -> list[nn.Module]:
    return [nn.BatchNorm2d(channels), nn.LeakyReLU(LEAK)]


class ConvGenerator(ConditionalGenerator):
    """GAN-CNN / GAN-ATT generator.

    z -> Linear -> (C0, ⌈T/Πu_t⌉, ⌈D/Πu_d⌉) map, then per stage a transposed conv (upsampling
    by (u_t, u_d)) and a 3×3 conv (dilated for GAN-ATT), each with BatchNorm + LeakyReLU, then
    a 3×3 conv to one channel, cropped to exactly (T, D). With ``attn_after = k`` a time
    self-attention follows the k-th conv layer (transposed and plain convs both count).

    ``final_up`` ≠ 1 makes that last layer upsample too, as a sub-pixel conv (3×3 conv to
    u_t·u_d channels, rearranged into a u_t × u_d block per cell; Shi et al. 2016): no
    multi-channel map at full resolution, which is what makes the small CPU configs fast. A
    transposed conv to one channel would do the same, but runs several times slower on a CPU.
    """

    def __init__(self, T, D, num_classes, noise_dim, init_channels, channels, up=2, dilations=1,
                 final_up=1, attn_after=None, attn_dim=256, attn_heads=4):
        super().__init__(T, D, num_classes, noise_dim)
        n = len(channels)
        ups, dils = _pairs(up, n, "g_up"), ints_per_layer(dilations, n, "g_dilations")
        final_t, final_d = (final_up, final_up) if isinstance(final_up, int) else map(int, final_up)
        t = math.ceil(T / (final_t * math.prod(u[0] for u in ups)))
        f = math.ceil(D / (final_d * math.prod(u[1] for u in ups)))
        self.init_shape = (init_channels, t, f)
        self.project = nn.Linear(self.z_dim, init_channels * t * f)
        self.project_act = nn.Sequential(*_bn_act(init_channels))

        layers, c_in, n_conv = [], init_channels, 0
        for c_out, (ut, ud), dil in zip(channels, ups, dils):
            layers += [_upconv(c_in, c_out, ut, ud), *_bn_act(c_out)]
            t, f, n_conv = t * ut, f * ud, n_conv + 1
            if n_conv == attn_after:
                layers.append(TimeSelfAttention(c_out, f, attn_dim, attn_heads))
            layers += [nn.Conv2d(c_out, c_out, 3, padding=dil, dilation=dil), *_bn_act(c_out)]
            n_conv += 1
            if n_conv == attn_after:
                layers.append(TimeSelfAttention(c_out, f, attn_dim, attn_heads))
            c_in = c_out
        if exists(attn_after) and not 1 <= attn_after <= n_conv:
            raise UserError(f"model.attn_after={attn_after}: the generator has {n_conv} conv layers")
        self.body = nn.Sequential(*layers)
        # Linear output, no tanh: standardised features are not bounded.
        self.final_up = (final_t, final_d)
        self.to_features = nn.Conv2d(c_in, final_t * final_d, 3, padding=1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.project_act(self.project(z).view(z.shape[0], *self.init_shape))
        h = self.to_features(self.body(h))
        (ut, ud), (b, _, t, f) = self.final_up, h.shape
        h = h.view(b, ut, ud, t, f).permute(0, 3, 1, 4, 2).reshape(b, t * ut, f * ud)
        return h[:, : self.T, : self.D]


class MLPGenerator(ConditionalGenerator):
    """GAN-MLP generator: z -> [Linear, BatchNorm, LeakyReLU]* -> Linear -> (B, 1, D)."""

    def __init__(self, D, num_classes, noise_dim, hidden):
        super().__init__(1, D, num_classes, noise_dim)
        layers, width = [], self.z_dim
        for h in hidden:
            layers += [nn.Linear(width, h), nn.BatchNorm1d(h), nn.LeakyReLU(LEAK)]
            width = h
        self.net = nn.Sequential(*layers, nn.Linear(width, D))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z).unsqueeze(1)


# ============================================================================ discriminators
def critic_forward(critic: nn.Module, h: torch.Tensor, return_features: bool, mean: torch.Tensor | None = None):
    """A discriminator's ``layers`` on h, then its two heads on the flattened output:
    critic (B,), logits (B, C)[, every layer's output for feature matching (Eq. 3)].
    With ``mean`` (B, D), the critic's ``mean_layers`` run on it too and their output joins
    the flattened map before the heads (the mean path of ``s3prl_dd.gan.time_conv``)."""
    feats = []
    for layer in critic.layers:
        h = layer(h)
        feats.append(h)
    h = h.flatten(1)
    if exists(mean):
        for layer in critic.mean_layers:
            mean = layer(mean)
            feats.append(mean)
        h = torch.cat([h, mean], dim=1)
    out = (critic.critic(h).squeeze(-1), critic.classifier(h))
    return (*out, feats) if return_features else out


class ConvDiscriminator(nn.Module):
    """Paper's discriminator: conv layers (8 in the paper) over the (1, T, D) map, each with
    LayerNorm-like GroupNorm(1, C) + LeakyReLU(0.2), strides shrinking T and D, then two linear
    heads on the flattened map: the critic value and the class logits. Kernels are 3×3 unless
    ``kernel_size`` says otherwise per layer (e.g. a 5×5 stride-4 stem for the CPU configs);
    padding is dilation·(k-1)/2, so a stride-s layer maps L to ⌈L/s⌉ for odd k."""

    def __init__(self, T, D, num_classes, channels, strides=2, dilations=1, kernel_size=3):
        super().__init__()
        self.T, self.D, n = T, D, len(channels)
        strides, dils = _pairs(strides, n, "d_strides"), ints_per_layer(dilations, n, "d_dilations")
        kernels = _pairs(kernel_size, n, "d_kernel_size")
        layers, c_in, t, f = [], 1, T, D
        for c_out, (st, sd), (kt, kd), dil in zip(channels, strides, kernels, dils):
            pt, pd = dil * (kt - 1) // 2, dil * (kd - 1) // 2
            layers.append(nn.Sequential(
                nn.Conv2d(c_in, c_out, (kt, kd), (st, sd), (pt, pd), dilation=dil),
                nn.GroupNorm(1, c_out),
                nn.LeakyReLU(LEAK),
            ))
            t, f = _conv_out(t, kt, st, pt, dil), _conv_out(f, kd, sd, pd, dil)
            if t < 1 or f < 1:
                raise UserError(f"model.d_strides shrink the ({T}, {D}) input to nothing")
            if kt < st or kd < sd:
                raise UserError(f"model.d_kernel_size ({kt}, {kd}) < stride ({st}, {sd}) skips inputs")
            c_in = c_out
        self.layers = nn.ModuleList(layers)
        self.out_shape = (c_in, t, f)
        self.critic = nn.Linear(c_in * t * f, 1)
        self.classifier = nn.Linear(c_in * t * f, num_classes)

    def forward(self, x: torch.Tensor, return_features: bool = False):
        """x (B, T, D) -> critic (B,), logits (B, C)[, the M layer outputs for Eq. 3]."""
        if tuple(x.shape[1:]) != (self.T, self.D):
            raise ValueError(f"discriminator expects (B, {self.T}, {self.D}), got {tuple(x.shape)}")
        return critic_forward(self, x.unsqueeze(1), return_features)


def mlp_critic_layers(width: int, hidden) -> tuple[nn.ModuleList, int]:
    """[Linear, LayerNorm, LeakyReLU] per entry of ``hidden`` (LayerNorm: per sample, for the
    gradient penalty), and the output width."""
    layers = []
    for h in hidden:
        layers.append(nn.Sequential(nn.Linear(width, h), nn.LayerNorm(h), nn.LeakyReLU(LEAK)))
        width = h
    return nn.ModuleList(layers), width


class MLPDiscriminator(nn.Module):
    """GAN-MLP discriminator on utterance vectors: [Linear, LayerNorm, LeakyReLU]* and the same
    two heads. Takes (B, T, D) and averages over time, so (B, 1, D) utterance means and
    generator outputs go in unchanged."""

    def __init__(self, D, num_classes, hidden):
        super().__init__()
        self.D = D
        self.layers, width = mlp_critic_layers(D, hidden)
        self.critic = nn.Linear(width, 1)
        self.classifier = nn.Linear(width, num_classes)

    def forward(self, x: torch.Tensor, return_features: bool = False):
        if x.dim() != 3 or x.shape[-1] != self.D:
            raise ValueError(f"discriminator expects (B, T, {self.D}), got {tuple(x.shape)}")
        return critic_forward(self, x.mean(1), return_features)


# ============================================================================ factory
_COMMON = {"arch", "T", "D", "num_classes", "noise_dim"}
_KEYS = {
    "gan_cnn": _COMMON | {"conv", "g_init_channels", "g_channels", "g_up", "g_dilations", "g_final_up",
                          "d_channels", "d_strides", "d_dilations", "d_kernel_size",
                          "g_mean_hidden", "d_mean_hidden"},
    "gan_mlp": _COMMON | {"g_hidden", "d_hidden"},
}
_KEYS["gan_att"] = _KEYS["gan_cnn"] | {"attn_after", "attn_dim", "attn_heads"}


def _require(cfg: Mapping, key: str):
    if key not in cfg:
        raise UserError(f"model.{key} is missing (arch {cfg.get('arch')})")
    return cfg[key]


def build_gan(cfg: Mapping) -> tuple[ConditionalGenerator, nn.Module]:
    """(generator, discriminator) from a ``model:`` section (or a whole config holding one)."""
    cfg = cfg["model"] if "model" in cfg else cfg
    arch = _require(cfg, "arch")
    if arch not in ARCHS:
        raise UserError(f"model.arch '{arch}' is not one of {', '.join(ARCHS)}")
    unknown = set(cfg) - _KEYS[arch]
    if unknown:
        raise UserError(f"model: unknown key(s) for {arch}: {', '.join(sorted(unknown))}")
    D, C, noise = _require(cfg, "D"), _require(cfg, "num_classes"), default(cfg.get("noise_dim"), 100)
    if arch == "gan_mlp":
        if cfg.get("T", 1) != 1:
            raise UserError("model.T must be 1 for gan_mlp (it generates utterance means)")
        return (MLPGenerator(D, C, noise, _require(cfg, "g_hidden")),
                MLPDiscriminator(D, C, _require(cfg, "d_hidden")))
    T, conv = _require(cfg, "T"), cfg.get("conv", "2d")
    mean_path = {k: list(cfg.get(k) or []) for k in ("g_mean_hidden", "d_mean_hidden")}
    if conv == "2d":
        if any(mean_path.values()):
            raise UserError("model.g_mean_hidden / d_mean_hidden (the mean path) need model.conv=1d")
        G, Dis = ConvGenerator, ConvDiscriminator
        g_extra, d_extra = {"final_up": cfg.get("g_final_up", 1)}, {}
    elif conv == "1d":
        from s3prl_dd.gan.time_conv import TimeConvDiscriminator, TimeConvGenerator

        if cfg.get("g_final_up", 1) != 1:
            raise UserError("model.g_final_up must be 1 with model.conv=1d (the output layer maps channels to D)")
        G, Dis = TimeConvGenerator, TimeConvDiscriminator
        g_extra, d_extra = {"mean_hidden": mean_path["g_mean_hidden"]}, {"mean_hidden": mean_path["d_mean_hidden"]}
    else:
        raise UserError(f"model.conv '{conv}' is not one of 2d, 1d")
    generator = G(
        T, D, C, noise,
        init_channels=_require(cfg, "g_init_channels"),
        channels=_require(cfg, "g_channels"),
        up=cfg.get("g_up", 2),
        dilations=cfg.get("g_dilations", 1),
        attn_after=cfg.get("attn_after", 4) if arch == "gan_att" else None,
        attn_dim=cfg.get("attn_dim", 256),
        attn_heads=cfg.get("attn_heads", 4),
        **g_extra,
    )
    discriminator = Dis(
        T, D, C,
        channels=_require(cfg, "d_channels"),
        strides=cfg.get("d_strides", 2),
        dilations=cfg.get("d_dilations", 1),
        kernel_size=cfg.get("d_kernel_size", 3),
        **d_extra,
    )
    return generator, discriminator


def count_parameters(module: nn.Module, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


def size_on_disk_bytes(module: nn.Module) -> int:
    """Bytes of ``torch.save(module.state_dict())``: what a checkpoint of it costs (Table 1)."""
    buffer = io.BytesIO()
    torch.save(module.state_dict(), buffer)
    return buffer.getbuffer().nbytes
