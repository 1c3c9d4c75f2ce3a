"""The upstream layer per fold: a mapping, or each fold's choice on its own dev split (layer: dev)."""
import json
import re

import pytest
import yaml

from s3prl_dd.pipeline import cells as cells_mod
from s3prl_dd.pipeline import run as run_mod
from s3prl_dd.pipeline.config import load_pipeline_config
from s3prl_dd.pipeline.layers import choose, fold_layer, store_dir
from s3prl_dd.utils import UserError, load_yaml

TINY = {
    "name": "tiny_layers",
    "corpus": {"type": "builtin", "n_per_speaker": 4, "seed": 0},
    "upstream": "ge2e", "folds": [1, 2], "seeds": [0, 1], "workers": 1,
    "er": {"profile": "fast", "overrides": "runner.total_steps=20,,runner.eval_step=10"},
    "gan": {"archs": [], "variants": ["baseline"]},
    "sources": ["real", "random"], "budgets": [2], "balance": ["balanced"], "table3": False,
    "downstreams": ["linear"],
}


def write_cfg(tmp_path, **over):
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump({**TINY, **over}))
    return path


@pytest.mark.parametrize("over, message", [
    ({"layer": "dev"}, "layer: dev needs layer_candidates"),
    ({"layer": "dev", "layer_candidates": [1, 1]}, "lists a layer twice"),
    ({"layer": {1: 2}}, "no layer for fold(s) [2]"),
    ({"layer": {1: 2, 2: "x"}}, "a mapping fold -> hidden-state index"),
    ({"layer": "last"}, "neither a hidden-state index"),
])
def test_bad_layer_settings_are_refused_before_any_work(tmp_path, over, message):
    with pytest.raises(UserError, match=re.escape(message)):
        load_pipeline_config(write_cfg(tmp_path, **over))


def test_fold_layer_and_its_store(tmp_path):
    one = load_pipeline_config(write_cfg(tmp_path, layer=2))
    assert fold_layer(one, 1) == fold_layer(one, "fold2") == 2
    assert store_dir("r", one, 2).name == "store"  # single-layer runs keep the old layout
    mapped = load_pipeline_config(write_cfg(tmp_path), ["layer={1: 2, 2: 1}"])
    assert (fold_layer(mapped, "fold1"), fold_layer(mapped, 2)) == (2, 1)
    assert (store_dir("r", mapped, 1).name, store_dir("r", mapped, 2).name) == ("store-layer2", "store-layer1")


def test_choose_takes_the_best_dev_and_the_first_listed_on_a_tie():
    assert choose({1: 70.0, 2: 80.0}, [1, 2]) == 2
    assert choose({1: 80.0, 2: 80.0}, [2, 1]) == 2


def test_layer_dev_chooses_each_fold_on_its_own_dev_split(tmp_path, monkeypatch):
    """Fold 1's dev prefers layer 2 and fold 2's layer 1, while the two dev splits pooled would
    give layer 2 to both: each fold must get its own. The grid then runs each fold on its store,
    the saved config holds the choice, and a rerun trains nothing again."""
    dev = {(1, 1): 60.0, (1, 2): 90.0, (2, 1): 71.0, (2, 2): 70.0}
    calls = []

    def fake_cell(cell, ctx):
        store = cells_mod.store_of(ctx, cell["fold"])
        calls.append((cell["fold"], cell["source"], store))
        layer = int(store.rsplit("store-layer", 1)[1])
        return {**cell, "recipe": cells_mod.cell_recipe(cell, ctx["cfg"]), "dev_uar": dev[(cell["fold"], layer)],
                "test_uar": 50.0, "test_acc": 50.0, "best_step": 10, "steps": 20, "stopped": "patience",
                "n_train": 8, "train_seconds": 0.1, "train_seconds_total": 0.1, "standardized": False,
                "set_seconds": 0.0, "predictions": "", "test_labels": ""}

    monkeypatch.setattr(cells_mod, "run_cell", fake_cell)
    monkeypatch.setattr(run_mod, "run_cell", fake_cell)
    out = tmp_path / "run"
    run_mod.run_pipeline(write_cfg(tmp_path, layer="dev", layer_candidates=[1, 2]), out=out, report=False)

    choice = json.loads((out / "layer_choice.json").read_text())
    assert choice["chosen"] == {"1": 2, "2": 1}
    assert len(choice["records"]) == 2 * 2 * 2  # folds x candidates x seeds, full real data only
    assert load_yaml(out / "config.yaml")["layer"] == {1: 2, 2: 1}
    assert sorted(p.name for p in out.glob("store*")) == ["store-layer1", "store-layer2"]
    grid = [(f, s) for f, s, _ in calls[8:]]
    assert sorted(set(grid)) == [(1, "random"), (1, "real"), (2, "random"), (2, "real")]
    assert all(store.endswith({1: "store-layer2", 2: "store-layer1"}[f]) for f, _, store in calls[8:])
    cell = json.loads(next((out / "cells").glob("fold2-seed0-linear-real-*.json")).read_text())
    assert cell["dev_uar"] == dev[(2, 1)]

    calls.clear()
    run_mod.run_pipeline(write_cfg(tmp_path, layer="dev", layer_candidates=[1, 2]), out=out, report=False)
    assert calls == []  # the choice and every cell are reused
    with pytest.raises(UserError, match="was made with layer"):  # another choice rule on the same run
        run_mod.run_pipeline(write_cfg(tmp_path, layer=2), out=out, report=False)


def test_a_per_fold_layer_runs_and_reports_end_to_end(tmp_path):
    """Real extraction and ER runs (GE2E, two layers): the report names the layers and shows the
    dev table the choice was made on; each fold's real cell is the choice's own run."""
    out = tmp_path / "run"
    cfg = write_cfg(tmp_path, layer="dev", layer_candidates=[1, 2], seeds=[0], sources=["real"])
    run_mod.run_pipeline(cfg, out=out)
    choice = json.loads((out / "layer_choice.json").read_text())
    report = (out / "report.md").read_text()
    assert "The layer of each fold, chosen on its own dev split" in report
    results = json.loads((out / "results.json").read_text())
    assert results["layer_choice"]["chosen"] == choice["chosen"]
    for fold in (1, 2):
        rec = next(r for r in results["records"] if r["fold"] == fold and r["source"] == "real")
        chosen = choice["chosen"][str(fold)]
        mine = [r for r in choice["records"] if r["fold"] == fold and r["layer"] == chosen]
        assert rec["dev_uar"] == pytest.approx(mine[0]["dev_uar"])
