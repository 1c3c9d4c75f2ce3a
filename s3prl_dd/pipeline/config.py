"""Pipeline configs: YAML + ``-o a.b=v,,c=w`` overrides, validated before any work starts."""
from __future__ import annotations

import copy

from ..utils import UserError, apply_overrides, load_yaml, merge_config

VARIANTS = {"baseline": [], "div": ["div"], "sml": ["sml"], "div_sml": ["div", "sml"]}
REAL_SOURCES = {"real", "random", "herding"}
DOWNSTREAMS = {"linear": "UtteranceLevel", "deep": "DeepModel"}

DEFAULTS = {
    "name": "pipeline",
    "corpus": {"type": "builtin", "n_per_speaker": 40, "seed": 0},
    "upstream": "fbank_no_cmvn",
    "layer": -1,                        # a hidden-state index; {fold: index}; or dev (per fold, on its
    "layer_candidates": None,           # own dev split, among these indices): pipeline/layers.py
    "device": None,                     # None: cuda if available, else cpu
    "workers": 1,                       # parallel processes for GAN training and ER cells
    "folds": [1],
    "seeds": [0],                       # downstream seeds: sampling draw + ER initialisation
    "gan_seeds": [0],                   # GANs per fold x arch x variant; downstream seed i uses
                                        # gan_seeds[i % len]: generator variance is part of the result
    # every training set is scored with one recipe that trains to convergence (er_cached.yaml)
    "er": {"profile": "converge", "overrides": None},
    "deep_er": {"profile": "converge", "overrides": None},
    "pool": {"overrides": None},
    "gan": {"archs": ["gan_mlp"], "variants": ["baseline", "div_sml"],
            "configs": {"gan_mlp": "downstream_configs/gan/gan_mlp_cpu.yaml",
                        "gan_att": "downstream_configs/gan/gan_att_cpu.yaml",
                        "gan_cnn": "downstream_configs/gan/gan_cnn_cpu.yaml"},
            "overrides": {},
            "arch_variants": {},        # per-arch variant list, e.g. {gan_att: [baseline, div_sml]}
            "distill_archs": None},     # archs whose generator feeds gan_latent / gan_herding (None: all)
    "sources": ["real", "random", "gan"],
    "budgets": [5, 10, 20],             # points per class; "full" = the real train size
    "balance": ["balanced"],            # balanced | imbalanced (= the real class prior)
    "table3": True,                     # real vs GAN at the balanced-minority size and full size
    "downstreams": ["linear"],
    "per_downstream": {},               # a smaller grid for a slow downstream, e.g.
                                        # {deep: {sources: [real, random, gan], budgets: [5, 20], seeds: [0], table3: false,
                                        #         archs: [gan_att]}}
                                        # and its own distill options: {deep: {distill: {dm: {frames: true}}}}
    "distill": {},                      # per-source options (gan, gan_latent, gan_herding, dm) over downstream_configs/distill/
    # Table 4 (SID privacy probe) from the run's own ER models: s3prl_dd/pipeline/privacy.py
    "probe": {"enabled": False,
              "fold": None,             # None: the first fold
              "er_seed": None,          # which downstream seed's ER models; None: the first seed
              "arch": None,             # whose Baseline / proposed GAN rows; None: the first arch
              "budget": "full", "balance": "imbalanced",  # the GAN rows' training sets (paper: full size)
              "seeds": [0, 1, 2],       # speaker-probe seeds (split + init)
              "speaker": {},            # s3prl_dd.probe.speaker.DEFAULT_PROBE overrides
              "memo": {}},              # s3prl_dd.probe.memorization.DEFAULT_MEMO overrides
}


PER_DOWNSTREAM_KEYS = {"sources", "budgets", "seeds", "folds", "table3", "balance", "distill", "archs"}


def for_downstream(cfg: dict, ds: str) -> dict:
    """The grid settings that apply to downstream ``ds``. Its ``distill`` options go over the
    shared ones source by source (e.g. frame-level DM for a model that uses time); its ``archs``
    narrow the GANs whose samples it scores (every GAN of ``gan.archs`` is still trained)."""
    sub = cfg["per_downstream"].get(ds, {})
    distill = {s: merge_config(cfg["distill"].get(s, {}), sub.get("distill", {}).get(s))
               for s in dict.fromkeys([*cfg["distill"], *sub.get("distill", {})])}
    out = {**cfg, **{k: v for k, v in sub.items() if k != "archs"}, "distill": distill}
    if "archs" in sub:
        out["gan"] = {**cfg["gan"], "archs": list(sub["archs"])}
    return out


def load_pipeline_config(path, overrides=None) -> dict:
    """A config file (or a run's saved config.yaml) over the defaults, then overrides, validated."""
    raw = load_yaml(path)
    unknown = set(raw) - set(DEFAULTS)
    if unknown:
        raise UserError(f"{path}: unknown pipeline keys {sorted(unknown)} (known: {sorted(DEFAULTS)})")
    merged = merge_config(DEFAULTS, raw)
    if "corpus" in raw:  # a corpus spec is one thing: the builtin defaults must not leak into it
        merged["corpus"] = copy.deepcopy(raw["corpus"])
    cfg = apply_overrides(merged, overrides)
    # ",," separates -o's own overrides, so a GAN's may come as a list of them:
    # -o "gan.overrides.gan_att=['model.D=auto','loss.lambda_mm=10.0']"
    if isinstance(cfg.get("gan"), dict) and isinstance(cfg["gan"].get("overrides"), dict):
        cfg["gan"]["overrides"] = {a: ",,".join(map(str, v)) if isinstance(v, list) else v
                                   for a, v in cfg["gan"]["overrides"].items()}
    validate(cfg)
    return cfg


LISTS = ("folds", "seeds", "gan_seeds", "sources", "budgets", "balance", "downstreams")
FIXED_SECTIONS = ("er", "deep_er", "pool", "gan", "probe")  # mappings whose keys are all known


def _check_shapes(cfg: dict) -> None:
    """Types and nested keys, before anything else reads the config: a YAML typo (``gan.archz``)
    must not run the defaults, and ``-o budgets=5`` must not end in a traceback."""
    for section in FIXED_SECTIONS:
        if not isinstance(cfg[section], dict):
            raise UserError(f"{section}: expected a mapping, got {cfg[section]!r}")
        unknown = sorted(set(cfg[section]) - set(DEFAULTS[section]))
        if unknown:
            raise UserError(f"{section}: unknown keys {unknown} (known: {sorted(DEFAULTS[section])})")
    for key in LISTS + tuple(f"gan.{k}" for k in ("archs", "variants")):
        node = cfg["gan"][key[4:]] if key.startswith("gan.") else cfg[key]
        if not isinstance(node, list):
            raise UserError(f"{key}: expected a list, got {node!r} (e.g. {key}=[{node}])")
    for key in ("corpus", "per_downstream", "distill") + tuple(f"gan.{k}" for k in ("configs", "overrides", "arch_variants")):
        node = cfg["gan"][key[4:]] if key.startswith("gan.") else cfg[key]
        if not isinstance(node, dict):
            raise UserError(f"{key}: expected a mapping, got {node!r}")
    if not isinstance(cfg["workers"], int) or isinstance(cfg["workers"], bool) or cfg["workers"] < 1:
        raise UserError(f"workers: {cfg['workers']!r} is not a positive integer")
    for key in ("folds", "seeds", "gan_seeds"):
        for x in cfg[key]:
            if not isinstance(x, int) or isinstance(x, bool) or x < (1 if key == "folds" else 0):
                raise UserError(f"{key}: {x!r} is not a {'positive' if key == 'folds' else 'non-negative'} integer")
    for key, kind in (("name", str), ("upstream", str), ("table3", bool)):
        if not isinstance(cfg[key], kind):
            raise UserError(f"{key}: expected a {kind.__name__}, got {cfg[key]!r}")
    from ..distill.sources import SOURCES

    known = ("real", *SOURCES)
    for src in cfg["sources"]:
        if src not in known:
            raise UserError(f"sources: unknown '{src}' (choose from {', '.join(known)})")


def validate(cfg: dict) -> None:
    from .layers import check_layer

    _check_shapes(cfg)
    check_layer(cfg)
    for v in [v for a in cfg["gan"]["archs"] for v in variants_for(cfg, a)]:
        if v not in VARIANTS:
            raise UserError(f"gan.variants: unknown variant '{v}' (choose from {list(VARIANTS)})")
    for a in cfg["gan"]["archs"]:
        if a not in cfg["gan"]["configs"]:
            raise UserError(f"gan.archs: no config for '{a}' in gan.configs")
    if not set(cfg["gan"]["distill_archs"] or []) <= set(cfg["gan"]["archs"]):
        raise UserError("gan.distill_archs must be a subset of gan.archs")
    for d in cfg["downstreams"]:
        if d not in DOWNSTREAMS:
            raise UserError(f"downstreams: unknown '{d}' (choose from {list(DOWNSTREAMS)})")
    for ds, sub in cfg["per_downstream"].items():
        if ds not in cfg["downstreams"] or not set(sub) <= PER_DOWNSTREAM_KEYS:
            raise UserError(f"per_downstream.{ds}: a listed downstream with keys from {sorted(PER_DOWNSTREAM_KEYS)}")
        if not set(sub.get("sources", [])) <= set(cfg["sources"]):
            raise UserError(f"per_downstream.{ds}.sources must be a subset of sources")
        if not isinstance(sub.get("archs", []), list) or not set(sub.get("archs", [])) <= set(cfg["gan"]["archs"]):
            raise UserError(f"per_downstream.{ds}.archs must be a list, a subset of gan.archs")
    from ..distill.sources import DEFAULTS as OPTIONED  # the sources that take options

    for where, distill in [("distill", cfg["distill"])] + [(f"per_downstream.{d}.distill", sub.get("distill", {}))
                                                         for d, sub in cfg["per_downstream"].items()]:
        if set(distill) - set(OPTIONED):
            raise UserError(f"{where}: options for {sorted(set(distill) - set(OPTIONED))}; only {sorted(OPTIONED)} take options")
    for b in cfg["budgets"]:
        if not (b == "full" or (isinstance(b, int) and b > 0)):
            raise UserError(f"budgets: {b!r} is neither a positive integer nor 'full'")
    for b in cfg["balance"]:
        if b not in ("balanced", "imbalanced"):
            raise UserError(f"balance: {b!r} (balanced | imbalanced)")
    if set(cfg["probe"]) - set(DEFAULTS["probe"]):
        raise UserError(f"probe: unknown keys {sorted(set(cfg['probe']) - set(DEFAULTS['probe']))}")
    if cfg["probe"].get("enabled") and not (cfg["probe"]["budget"] == "full" or isinstance(cfg["probe"]["budget"], int)):
        raise UserError(f"probe.budget: {cfg['probe']['budget']!r} is neither a positive integer nor 'full'")
    if not cfg["folds"] or not cfg["seeds"] or not cfg["gan_seeds"]:
        raise UserError("folds, seeds and gan_seeds must not be empty")


def gan_key(arch: str, variant: str, fold, gan_seed: int) -> str:
    """Name of one GAN of the grid: its directory under run/gans and its key in ctx["generators"]."""
    return f"{arch}-{variant}-fold{fold}-g{gan_seed}"


def gan_seed_for(cfg: dict, seed: int, seeds: list) -> int:
    """The GAN seed whose generator a downstream seed's cells use: one GAN per downstream seed
    while there are enough, so downstream seeds are not all draws from one generator."""
    return int(cfg["gan_seeds"][list(seeds).index(seed) % len(cfg["gan_seeds"])])


def variants_for(cfg: dict, arch: str) -> list[str]:
    """The loss variants trained for ``arch``; the last one is "the" distiller of that arch
    (its samples feed gan_latent / gan_herding and Table 3)."""
    return cfg["gan"]["arch_variants"].get(arch, cfg["gan"]["variants"])


def variant_overrides(variant: str) -> str:
    """The paper's ablation rows as loss weights: a term absent from the variant gets λ = 0."""
    losses = VARIANTS[variant]
    parts = []
    if "div" not in losses:
        parts.append("loss.lambda_div=0.0")
    if "sml" not in losses:
        parts.append("loss.lambda_sml=0.0")
    return ",,".join(parts)
