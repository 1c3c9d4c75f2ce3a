"""The ``sid_probe`` block of a pipeline run: the paper's Table 4 on one corpus, plus the
memorisation check of each generator.

``probe_run(store, fold, er_models, generators, seeds, out_dir)`` is what the pipeline calls;
``s3prl-dd probe`` is its command line (``probe_command``)."""
from __future__ import annotations

import math
import time
from pathlib import Path

import torch

from ..features.store import FeatureStore, describe_representation, normalize_fold, same_representation
from ..utils import UserError, atomic_write_json, atomic_write_text, merge_config
from .memorization import DEFAULT_MEMO, check_generator
from .ser import SERProjector, load_ser_projector
from .speaker import probe_config, speaker_probe

UPSTREAM_ROW = "upstream"
# Table 4 of the paper: VoxCeleb1 SID accuracy (%) with HuBERT Base; for orientation only.
PAPER_TABLE4 = {UPSTREAM_ROW: 80.89, "real": 44.87, "baseline": 42.87, "proposed": 37.99}
ROW_LABELS = {UPSTREAM_ROW: "Upstream features, no SER layer (SID reference)",
              "real": "SER downstream with Real SSL",
              "baseline": "SER downstream with Baseline WGAN-GP",
              "proposed": "SER downstream with Proposed GAN (+L_DIV +L_SML)"}


def row_label(name: str) -> str:
    return ROW_LABELS.get(name, f"SER downstream: {name}")


def _check_projector(name: str, proj: SERProjector, store) -> None:
    if proj.in_dim != store.dim:
        raise UserError(f"SER model '{name}' takes {proj.in_dim}-dim features, the store holds {store.dim}-dim")
    if proj.representation is not None and not same_representation(proj.representation, store.representation):
        raise UserError(f"SER model '{name}' was trained on {describe_representation(proj.representation)}, "
                        f"the store holds {describe_representation(store.representation)}")
    up = store.meta.get("upstream")
    if proj.upstream and up and proj.upstream != up:
        raise UserError(f"SER model '{name}' was trained on upstream '{proj.upstream}', the store is '{up}'")


def _pct(x) -> str:
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:.2f}"


def markdown_table(block: dict) -> str:
    """Table 4 as markdown: accuracy mean ± std over seeds (lower = less speaker information)."""
    rows = block["rows"]
    real = next((r for r in rows if r["name"] == "real"), None)
    lines = [f"Table 4 (within-corpus): speaker-ID accuracy (% ↓) on `{block['store_name']}`, {block['n_speakers']} "
             f"speakers, {block['fold']} statistics, {len(block['seeds'])} seeds (split {block['config']['train_ratio']:.0%}"
             f" per speaker, {block['config']['steps']} Adam steps at lr {block['config']['lr']:g}).",
             "",
             "| Speaker embedding | Acc (% ↓) | Δ vs real (points) | eff. rank | paper (VoxCeleb1, HuBERT) |",
             "|---|---|---|---|---|"]
    for r in rows:
        acc = _pct(r["acc_mean"]) + (f" ± {_pct(r['acc_std'])}" if r["acc_std"] == r["acc_std"] else "")
        delta = "" if real is None or r["name"] == "real" else f"{100 * (r['acc_mean'] - real['acc_mean']):+.2f}"
        rank = "" if r["effective_rank"] is None else f"{r['effective_rank']:.1f}"
        paper = f"{PAPER_TABLE4[r['name']]:.2f}" if r["name"] in PAPER_TABLE4 else ""
        lines.append(f"| {r['label']} | {acc} | {delta} | {rank} | {paper} |")
    memo = block.get("memorization") or {}
    if memo:
        lines += ["", "Memorisation check (nearest real TRAIN utterance; ratio = median gen / median held-out "
                  f"({next(iter(memo.values()))['heldout_part']}) distance; frac = share of samples closer than any held-out one):",
                  "", "| Generator | pooled ratio | pooled frac | frame ratio | frame frac | flagged |", "|---|---|---|---|---|---|"]
        for name, m in memo.items():
            p, f = m["pooled"], m["frame"]
            fr = (f"{f['ratio']:.3f} | {f['frac_closer_than_any_heldout']:.3f}" if "ratio" in f else "– | –")
            lines.append(f"| {name} | {p['ratio']:.3f} | {p['frac_closer_than_any_heldout']:.3f} | {fr} | "
                         f"{'YES' if m['flagged'] else 'no'} |")
    return "\n".join(lines) + "\n"


def probe_run(store, fold, er_models: dict, generators: dict | None = None, seeds=(0, 1, 2),
              out_dir=None, cfg: dict | None = None, memo: dict | None = None, device="cpu") -> dict:
    """Speaker probe rows (the plain upstream features, then each of ``er_models``: row name ->
    ER checkpoint path or ``SERProjector``) and the memorisation check of each of ``generators``
    (name -> generator.pt or DistilledGenerator). Each ER model is applied in the input space its
    checkpoint records (raw or standardised with its own statistics). Returns the ``sid_probe`` block; with ``out_dir`` also writes
    ``sid_probe.json`` and ``sid_probe.md`` (the Table 4 snippet) there."""
    t0 = time.perf_counter()
    store = store if isinstance(store, FeatureStore) else FeatureStore.open(store)
    fold = normalize_fold(fold) if store.folds else str(fold)
    cfg = probe_config(cfg)
    memo = merge_config(DEFAULT_MEMO, memo, "memorisation-check")
    if UPSTREAM_ROW in er_models:
        raise UserError(f"'{UPSTREAM_ROW}' is the reserved name of the plain-features row")
    embedders = {UPSTREAM_ROW: None}
    for name, src in er_models.items():
        proj = load_ser_projector(src)
        _check_projector(name, proj, store)
        embedders[name] = proj
    seeds = [int(s) for s in seeds]
    results = speaker_probe(store, fold, embedders, seeds, cfg, device=device)
    rows = [{"name": n, "label": row_label(n), **r} for n, r in results.items()]
    memorization = {}
    for name, g in (generators or {}).items():
        memorization[name] = check_generator(store, fold, g, **memo, device=device)
        memorization[name]["generator"] = str(g) if isinstance(g, (str, Path)) else type(g).__name__
    # a pipeline's store is <run>/store: the run's name says which corpus it is
    name = store.path.name if store.path.name != "store" else f"{store.path.parent.name}/store"
    block = {"store": str(store.path), "store_name": name, "upstream": store.meta.get("upstream"),
             "fold": fold, "seeds": seeds, "n_speakers": rows[0]["n_speakers"], "config": cfg, "memo_config": memo,
             "rows": rows, "memorization": memorization}
    block["markdown"] = markdown_table(block)
    block["elapsed_s"] = time.perf_counter() - t0
    if out_dir is not None:
        out = Path(out_dir)
        atomic_write_json({"sid_probe": block}, out / "sid_probe.json")
        atomic_write_text(block["markdown"], out / "sid_probe.md")
    return block


# ---------------------------------------------------------------------------- command line
def parse_named(text: str | None, what: str) -> dict:
    """``"real=a.pt,baseline=b.pt"`` -> {"real": "a.pt", "baseline": "b.pt"} (order kept)."""
    out = {}
    for part in filter(None, (p.strip() for p in (text or "").split(","))):
        name, sep, path = part.partition("=")
        if not sep or not name.strip() or not path.strip():
            raise UserError(f"{what}: '{part}' is not NAME=PATH")
        if name.strip() in out:
            raise UserError(f"{what}: '{name.strip()}' is given twice")
        out[name.strip()] = path.strip()
    return out


def probe_options(args) -> tuple[list | None, dict, dict]:
    """(seeds, speaker-probe options, memorisation options) from ``s3prl-dd probe``'s flags."""
    seeds = [int(s) for s in str(args.seeds).split(",") if s.strip()] if args.seeds else None
    cfg = {k: v for k, v in (("steps", args.steps), ("lr", args.lr), ("train_ratio", args.train_ratio)) if v is not None}
    memo = {k: v for k, v in (("n_per_class", args.n_per_class), ("heldout", args.heldout)) if v is not None}
    return seeds, cfg, memo


def probe_command(args) -> dict:
    """Body of ``s3prl-dd probe --store ...`` (see cli.py for the flags; ``--run`` is the
    pipeline's: ``s3prl_dd.pipeline.run.probe_pipeline_run``)."""
    if getattr(args, "threads", None):
        torch.set_num_threads(max(1, int(args.threads)))
    seeds, cfg, memo = probe_options(args)
    er, gens = parse_named(args.er, "--er"), parse_named(args.generator, "--generator")
    if not args.store or not args.fold:
        raise UserError("give --store and --fold (or --run)")
    if not er and not gens:
        raise UserError("nothing to probe: give --er NAME=CKPT,... and/or --generator NAME=generator.pt,...")
    return probe_run(args.store, args.fold, er, gens, seeds or [0, 1, 2], args.out, cfg, memo, device=args.device or "cpu")
