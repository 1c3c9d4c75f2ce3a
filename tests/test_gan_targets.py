"""benchmarks/gan_targets.py: the GAN issue's four targets, marked from result JSONs by code."""
import json
import sys

import pytest
import yaml

from benchmark_scripts import BENCH, load_benchmark
from s3prl_dd.utils import UserError

sys.path.insert(0, str(BENCH))
gan_targets = load_benchmark("gan_targets")

FOLDS, BUDGETS = [1, 2, 3, 4, 5], [1, 2, 5, 10, 20]
NOISE = {1: 0.0, 2: 0.4, 3: -0.3, 4: 0.2, 5: -0.3}   # a fold's own offset: the paired t needs spread


def result(sets, budgets=BUDGETS, real=85.0):
    """A test-result JSON: each set scores sets[name](ppc) + the fold's noise, full real data ``real``."""
    records = [{"set": "real", "fold": f, "seed": 0, "ppc": "full", "test_uar": real + NOISE[f],
                "test_labels": "0123" + str(f)} for f in FOLDS]
    records += [{"set": name, "fold": f, "seed": 0, "ppc": b, "test_uar": uar(b) + (2 + i) * NOISE[f]}
                for i, (name, uar) in enumerate(sets.items()) for f in FOLDS for b in budgets]
    return {"downstream": "linear", "folds": FOLDS, "budgets": list(budgets), "records": records}


def run(tmp_path, data, row_extra=None, out=True):
    path = tmp_path / "r.json"
    path.write_text(json.dumps(data))
    row = {"name": "gan", "set": f"{path}:gan", "random": f"{path}:random", "real": f"{path}:real",
           **(row_extra or {})}
    rows = tmp_path / "rows.yaml"
    rows.write_text(yaml.safe_dump({"rows": [row]}))
    dest = tmp_path / "out.json"
    assert gan_targets.main([str(rows), "--out", str(dest)]) == 0
    return json.loads(dest.read_text())["rows"][0]["targets"]


def test_a_set_clear_of_every_line_meets_all_four(tmp_path):
    data = result({"gan": lambda b: 70.0 + b, "random": lambda b: 60.0 + b, "baseline": lambda b: 40.0})
    got = run(tmp_path, data, {"baseline": f"{tmp_path / 'r.json'}:baseline"})
    assert list(got.values()) == [True, True, True, True]


def test_each_target_fails_on_its_own_line(tmp_path):
    # 20 ppc: 0.5 below random (target 1), 2 ppc only +2 (target 2), 4 below full real (target 3),
    # and above the Baseline at two budgets only (target 4)
    gan = {1: 70.0, 2: 62.0, 5: 75.0, 10: 80.0, 20: 81.0}
    rnd = {1: 60.0, 2: 60.0, 5: 70.0, 10: 75.0, 20: 81.5}
    base = {1: 50.0, 2: 50.0, 5: 75.0, 10: 80.0, 20: 81.0}
    data = result({"gan": gan.get, "random": rnd.get, "baseline": base.get})
    got = run(tmp_path, data, {"baseline": f"{tmp_path / 'r.json'}:baseline"})
    assert list(got.values()) == [False, False, False, False]


def test_without_a_baseline_the_fourth_is_not_assessed(tmp_path):
    got = run(tmp_path, result({"gan": lambda b: 70.0 + b, "random": lambda b: 60.0 + b}))
    assert list(got.values()) == [True, True, True, None]


def test_a_row_missing_a_budget_or_a_set_is_refused(tmp_path):
    with pytest.raises(UserError, match="no cells at 20 ppc"):
        run(tmp_path, result({"gan": lambda b: 70.0, "random": lambda b: 60.0}, budgets=[1, 2, 5, 10]))
    with pytest.raises(UserError, match="'random' is required"):
        run(tmp_path, result({"gan": lambda b: 70.0, "random": lambda b: 60.0}), {"random": None})
    with pytest.raises(UserError, match="no rows YAML"):
        gan_targets.main([str(tmp_path / "none.yaml")])
