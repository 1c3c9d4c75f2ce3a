"""The pipeline grid: cells, budgets, and a crash mid-grid that recomputes nothing complete."""
from pathlib import Path

import pytest
import yaml

from s3prl_dd.pipeline import cells as cells_mod
from s3prl_dd.pipeline import run as run_mod
from s3prl_dd.pipeline.cells import class_counts, enumerate_cells
from s3prl_dd.pipeline.config import load_pipeline_config
from s3prl_dd.utils import UserError

TINY = {
    "name": "tiny",
    "corpus": {"type": "builtin", "n_per_speaker": 4, "seed": 0},
    "folds": [1], "seeds": [0], "workers": 1,
    "er": {"profile": "fast", "overrides": "runner.total_steps=20,,runner.eval_step=10"},
    "gan": {"archs": ["gan_mlp"], "variants": ["baseline"],
            "overrides": {"gan_mlp": "train.steps=6,,train.eval_every=0,,train.save_every=3,,model.g_hidden=[16],,"
                                     "model.d_hidden=[16],,model.noise_dim=8,,optim.n_critic=1"}},
    "sources": ["real", "random", "gan"], "budgets": [2], "balance": ["balanced"], "table3": False,
    "downstreams": ["linear"],
}


def write_cfg(tmp_path, **over) -> Path:
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump({**TINY, **over}))
    return path


def test_class_counts_budgets():
    real = [40, 30, 20, 10]
    assert class_counts(5, "balanced", real) == {"neu": 5, "hap": 5, "ang": 5, "sad": 5}
    assert class_counts("min", "balanced", real) == {"neu": 10, "hap": 10, "ang": 10, "sad": 10}
    assert class_counts("full", "imbalanced", real) == {"neu": 40, "hap": 30, "ang": 20, "sad": 10}
    assert sum(class_counts(5, "imbalanced", real).values()) == 20


def test_grid_cells_and_bad_config(tmp_path):
    cfg = load_pipeline_config(write_cfg(tmp_path, table3=True, balance=["balanced", "imbalanced"]))
    cells = enumerate_cells(cfg)
    keys = {(c["source"], c["ppc"], c["balance"]) for c in cells}
    assert ("real", "full", "imbalanced") in keys and ("gan", "full", "balanced") in keys
    assert ("random", "min", "balanced") in keys and ("random", "full", "balanced") not in keys
    with pytest.raises(UserError, match="variant"):
        load_pipeline_config(write_cfg(tmp_path, gan={"variants": ["nope"]}))
    with pytest.raises(UserError, match="unknown pipeline keys"):
        load_pipeline_config(write_cfg(tmp_path, colour="blue"))


def test_crash_mid_grid_then_rerun_recomputes_nothing_complete(tmp_path, monkeypatch):
    cfg_path, out = write_cfg(tmp_path), tmp_path / "run"
    real_run_cell, calls = cells_mod.run_cell, []

    def crashing(cell, ctx):
        if len(calls) == 2:
            raise KeyboardInterrupt("killed mid-grid")
        calls.append(cells_mod.cell_key(cell))
        return real_run_cell(cell, ctx)

    monkeypatch.setattr(run_mod, "run_cell", crashing)
    with pytest.raises(KeyboardInterrupt):
        run_mod.run_pipeline(cfg_path, out=out, report=False)
    done = {p.name: p.stat().st_mtime_ns for p in (out / "cells").glob("*.json")}
    assert len(done) == 2
    generator = next((out / "gans").glob("*/*/generator.pt"))
    g_mtime = generator.stat().st_mtime_ns

    recomputed = []
    monkeypatch.setattr(run_mod, "run_cell", lambda c, ctx: recomputed.append(cells_mod.cell_key(c)) or real_run_cell(c, ctx))
    run_mod.run_pipeline(cfg_path, out=out)
    assert not set(calls) & set(recomputed)
    assert {p.name: p.stat().st_mtime_ns for p in (out / "cells").glob("*.json") if p.name in done} == done
    assert generator.stat().st_mtime_ns == g_mtime
    assert (out / "results.json").is_file() and "Table 2" in (out / "report.md").read_text()
    assert list((out / "cells").glob("*/events.out.tfevents*")), "every cell is a tensorboard run"
