"""The pipeline's privacy stage: the paper's Table 4 from the ER models of the run's own cells.

Rows (paper Sec. 5.3): the plain upstream features, then the first layer of the SER model
trained on real data (the ``real`` cell), on Baseline-GAN samples and on proposed-GAN samples
(the ``gan`` cells of the ``baseline`` and ``div_sml`` variants at ``probe.budget``; ``full`` =
as many samples as the real train part, following its class prior, as the paper trains them).
Each row's model is the cell's dev-selected ``cells/<key>/er-<step>.pt``. A cell that is not
in the grid, or whose directory predates per-cell checkpoints, is (re)run here; cells are
seeded, so the rerun reproduces its record. The memorisation check runs on both generators.

Output: ``run/sid_probe.json`` and ``run/sid_probe.md``, which the report picks up."""
from __future__ import annotations

import json
from pathlib import Path

from ..utils import UserError, atomic_write_json, atomic_write_text
from .cells import cell_key, run_cell, store_of
from .config import VARIANTS, gan_key, gan_seed_for, variants_for

# Table 4's GAN rows and the loss variant each one is
GAN_ROWS = {"baseline": "baseline", "proposed": "div_sml"}


def probe_settings(cfg: dict) -> dict:
    """``cfg["probe"]`` with its defaults resolved against the grid."""
    p = dict(cfg["probe"])
    p["fold"] = int(p["fold"] if p.get("fold") is not None else cfg["folds"][0])
    p["er_seed"] = int(p["er_seed"] if p.get("er_seed") is not None else cfg["seeds"][0])
    if not cfg["gan"]["archs"]:
        raise UserError("the privacy probe compares ER models trained on GAN samples: gan.archs is empty")
    p["arch"] = p.get("arch") or cfg["gan"]["archs"][0]
    if p["arch"] not in cfg["gan"]["archs"]:
        raise UserError(f"probe.arch '{p['arch']}' is not one of gan.archs {cfg['gan']['archs']}")
    return p


def probe_cells(cfg: dict) -> dict[str, dict]:
    """Table 4 row name -> the grid cell whose ER model it probes."""
    p = probe_settings(cfg)
    base = {"fold": p["fold"], "seed": p["er_seed"], "downstream": "linear", "arch": None, "variant": None,
            "losses": [], "gan_seed": None}
    rows = {"real": {**base, "source": "real", "ppc": "full", "balance": "imbalanced"}}
    gan_seed = gan_seed_for(cfg, p["er_seed"], cfg["seeds"])
    trained = variants_for(cfg, p["arch"])
    for row, variant in GAN_ROWS.items():
        if variant in trained:
            rows[row] = {**base, "source": "gan", "arch": p["arch"], "variant": variant, "losses": VARIANTS[variant],
                         "ppc": p["budget"], "balance": p["balance"], "gan_seed": gan_seed}
    return rows


def _best_checkpoint(cell_dir: Path, record: dict) -> Path | None:
    path = cell_dir / f"er-{record['best_step']}.pt"
    return path if path.is_file() else None


def ensure_cell_model(cell: dict, ctx: dict) -> Path:
    """The dev-selected ER checkpoint of ``cell``, running the cell if it has none yet."""
    run = Path(ctx["run"])
    key = cell_key(cell)
    rec_path = run / "cells" / f"{key}.json"
    if rec_path.is_file():
        ckpt = _best_checkpoint(run / "cells" / key, json.loads(rec_path.read_text()))
        if ckpt is not None:
            return ckpt
    record = run_cell(cell, ctx)
    atomic_write_json(record, rec_path)
    ckpt = _best_checkpoint(run / "cells" / key, record)
    if ckpt is None:
        raise UserError(f"cell {key} ran but left no er-{record['best_step']}.pt")
    return ckpt


def finished_probe(cfg: dict, run) -> dict | None:
    """The ``sid_probe`` block already in ``run/sid_probe.json`` for these settings, or None."""
    done = Path(run) / "sid_probe.json"
    if not done.is_file():
        return None
    block = json.loads(done.read_text())["sid_probe"]
    return block if block.get("pipeline_probe") == probe_settings(cfg) else None


def privacy_stage(cfg: dict, ctx: dict, force: bool = False) -> dict | None:
    """Run Table 4 for the run in ``ctx`` unless ``run/sid_probe.json`` already holds it for the
    same settings. Returns the ``sid_probe`` block (None when the stage is off)."""
    from ..probe.run import probe_run

    if not cfg["probe"].get("enabled"):
        return None
    run = Path(ctx["run"])
    if not force and (block := finished_probe(cfg, run)) is not None:
        return block
    p = probe_settings(cfg)
    done = run / "sid_probe.json"
    cells = probe_cells(cfg)
    er_models = {row: str(ensure_cell_model(c, ctx)) for row, c in cells.items()}
    gens = {row: ctx["generators"][gan_key(c["arch"], c["variant"], c["fold"], c["gan_seed"])]
            for row, c in cells.items() if c["source"] == "gan"}
    block = probe_run(store_of(ctx, p["fold"]), f"fold{p['fold']}", er_models, gens, seeds=p["seeds"], out_dir=None,
                      cfg=p.get("speaker") or None, memo=p.get("memo") or None, device=ctx["device"])
    block["pipeline_probe"] = p
    block["cells"] = {row: cell_key(c) for row, c in cells.items()}
    atomic_write_json({"sid_probe": block}, done)
    atomic_write_text(block["markdown"], run / "sid_probe.md")
    return block
