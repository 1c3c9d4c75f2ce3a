"""benchmarks/compare_sets.py: a set of one result JSON against a set of another, paired over folds."""
import json

import pytest

from benchmark_scripts import BENCH, load_benchmark
from s3prl_dd import metrics
from s3prl_dd.utils import UserError

compare_sets = load_benchmark("compare_sets")

FOLDS, BUDGETS = [1, 2, 3], [1, 5]


def result(name, uar, seeds=(0,), labels="0123"):
    """A result JSON whose set ``name`` scores uar(fold, ppc, seed) and whose folds test on ``labels``."""
    records = [{"set": "real", "fold": f, "seed": s, "ppc": "full", "test_uar": 80.0, "test_labels": labels + str(f)}
               for f in FOLDS for s in seeds]
    records += [{"set": name, "fold": f, "seed": s, "ppc": b, "test_uar": uar(f, b, s)}
                for f in FOLDS for b in BUDGETS for s in seeds]
    return {"downstream": "linear", "folds": FOLDS, "budgets": BUDGETS, "records": records}


def write(tmp_path, stem, data):
    path = tmp_path / f"{stem}.json"
    path.write_text(json.dumps(data))
    return path


def test_the_difference_is_paired_over_folds_with_seeds_averaged_inside_a_fold(tmp_path):
    new = write(tmp_path, "new", result("alt_mean", lambda f, b, s: 60.0 + 3 * f + b + 2 * s, seeds=(0, 1)))
    old = write(tmp_path, "old", result("alt", lambda f, b, s: 55.0 + f * f))
    out = tmp_path / "cmp.json"
    assert compare_sets.main([f"{new}:alt_mean", f"{old}:alt", "--out", str(out)]) == 0
    got = json.loads(out.read_text())["by_budget"]
    for b in BUDGETS:
        a = [60.0 + 3 * f + b + 1.0 for f in FOLDS]          # the mean of seeds 0 and 1
        o = [55.0 + f * f for f in FOLDS]
        want = metrics.paired_test(a, o)
        assert got[str(b)]["paired"]["mean_diff"] == pytest.approx(want["mean_diff"])
        assert got[str(b)]["paired"]["t_p"] == pytest.approx(want["t_p"])
        assert got[str(b)]["per_fold"]["2"] == pytest.approx([a[1], o[1]])


def test_different_test_utterances_are_refused(tmp_path):
    new = write(tmp_path, "new", result("alt", lambda f, b, s: 70.0))
    old = write(tmp_path, "old", result("alt", lambda f, b, s: 60.0, labels="3210"))
    with pytest.raises(UserError, match="same test utterances"):
        compare_sets.main([f"{new}:alt", f"{old}:alt"])


def test_an_unknown_set_or_a_bad_spec_names_what_there_is(tmp_path):
    new = write(tmp_path, "new", result("alt", lambda f, b, s: 70.0))
    with pytest.raises(UserError, match="its sets: alt, real"):
        compare_sets.main([f"{new}:baseline", f"{new}:alt"])
    with pytest.raises(UserError, match="PATH:SET"):
        compare_sets.main([str(new), f"{new}:alt"])
    with pytest.raises(UserError, match="no result JSON"):
        compare_sets.main([f"{tmp_path / 'missing.json'}:alt", f"{new}:alt"])


def test_a_side_of_several_sets_is_their_mean_per_fold(tmp_path):
    s0 = write(tmp_path, "s0", result("truncated", lambda f, b, s: 50.0 + f + b))
    s1 = write(tmp_path, "s1", result("truncated", lambda f, b, s: 60.0 + 2 * f))
    old = write(tmp_path, "old", result("random", lambda f, b, s: 55.0 + f * f))
    out = tmp_path / "cmp.json"
    assert compare_sets.main([f"{s0}:truncated+{s1}:truncated", f"{old}:random", "--out", str(out)]) == 0
    got = json.loads(out.read_text())
    for b in BUDGETS:
        a = [(50.0 + f + b + 60.0 + 2 * f) / 2 for f in FOLDS]
        want = metrics.paired_test(a, [55.0 + f * f for f in FOLDS])
        assert got["by_budget"][str(b)]["paired"]["mean_diff"] == pytest.approx(want["mean_diff"])
        assert got["by_budget"][str(b)]["paired"]["t_p"] == pytest.approx(want["t_p"])
    other = write(tmp_path, "other", result("truncated", lambda f, b, s: 70.0, labels="3210"))
    with pytest.raises(UserError, match="same test utterances"):  # every part is checked, not only the first
        compare_sets.main([f"{s0}:truncated+{other}:truncated", f"{old}:random"])


def test_full_real_data_pairs_with_a_set_at_every_budget(tmp_path):
    new = write(tmp_path, "new", result("alt", lambda f, b, s: 70.0 + f + b))
    out = tmp_path / "cmp.json"
    assert compare_sets.main([f"{new}:real", f"{new}:alt", "--out", str(out)]) == 0
    got = json.loads(out.read_text())["by_budget"]
    assert [got[str(b)]["paired"]["mean_diff"] for b in BUDGETS] == pytest.approx([80.0 - 72.0 - b for b in BUDGETS])


def test_run_as_a_script_a_bad_input_is_one_line_and_exit_status_2(tmp_path):
    # every benchmark script ends through s3prl_dd.errors.run_main, as the s3prl-dd commands do
    import os
    import subprocess
    import sys

    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(BENCH.parent), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, str(BENCH / "compare_sets.py"), f"{tmp_path}/nope.json:alt", f"{tmp_path}/x.json:alt"],
                          capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [f"compare_sets.py: error: no result JSON at {tmp_path}/nope.json"]



def pipeline_result(cells, labels="0123"):
    """A pipeline run's results.json: cells (source, arch, variant, downstream, balance, ppc, uar(fold, seed))."""
    records = [{"source": "real", "arch": None, "variant": None, "downstream": ds, "balance": "imbalanced",
                "ppc": "full", "fold": f, "seed": s, "test_uar": 80.0, "test_labels": labels + str(f)}
               for ds in ("linear", "deep") for f in FOLDS for s in (0, 1)]
    records += [{"source": src, "arch": arch, "variant": var, "downstream": ds, "balance": bal, "ppc": b,
                 "fold": f, "seed": s, "test_uar": uar(f, s)}
                for src, arch, var, ds, bal, b, uar in cells for f in FOLDS for s in (0, 1)]
    return {"config": {"folds": FOLDS, "budgets": BUDGETS}, "records": records}


def test_a_pipeline_run_is_read_by_generator_downstream_and_seed(tmp_path):
    cells = [("gan", "gan_att", "div_sml", "linear", "balanced", 5, lambda f, s: 60.0 + f + 10 * s),
             ("gan", "gan_att", "div_sml", "linear", "imbalanced", 5, lambda f, s: 0.0),   # Table 3: not a budget's set
             ("gan", "gan_att", "baseline", "linear", "balanced", 5, lambda f, s: 40.0),
             ("gan", "gan_att", "div_sml", "deep", "balanced", 5, lambda f, s: 30.0),
             ("gan_latent", "gan_att", "div_sml", "linear", "balanced", 5, lambda f, s: 70.0),
             ("random", None, None, "linear", "balanced", 5, lambda f, s: 50.0 + f * f)]
    run = write(tmp_path, "results", pipeline_result(cells))
    out = tmp_path / "cmp.json"
    assert compare_sets.main([f"{run}:gan_att-div_sml", f"{run}:random", "--seeds", "0", "--out", str(out)]) == 0
    got = json.loads(out.read_text())
    assert list(got["by_budget"]) == ["5"] and got["seeds"] == [0]
    want = metrics.paired_test([60.0 + f for f in FOLDS], [50.0 + f * f for f in FOLDS])
    assert got["by_budget"]["5"]["paired"]["mean_diff"] == pytest.approx(want["mean_diff"])
    assert got["by_budget"]["5"]["paired"]["t_p"] == pytest.approx(want["t_p"])
    assert compare_sets.main([f"{run}:gan_att-div_sml", f"{run}:gan_att-baseline", "--out", str(out)]) == 0
    assert json.loads(out.read_text())["by_budget"]["5"]["new"]["mean"] == pytest.approx(62.0 + 5.0)  # both seeds
    assert compare_sets.main([f"{run}:gan_att-div_sml", f"{run}:real", "--downstream", "deep", "--out", str(out)]) == 0
    assert json.loads(out.read_text())["by_budget"]["5"]["paired"]["mean_diff"] == pytest.approx(30.0 - 80.0)
    assert compare_sets.main([f"{run}:gan_latent-gan_att-div_sml", f"{run}:random", "--out", str(out)]) == 0
    with pytest.raises(UserError, match="no set 'gan_latent-gan_att-div_sml'"):  # no DeepModel cells of it
        compare_sets.main([f"{run}:gan_latent-gan_att-div_sml", f"{run}:real", "--downstream", "deep"])


def test_a_part_may_name_its_own_seeds_so_uneven_runs_weigh_equally(tmp_path):
    two = write(tmp_path, "two", result("alt", lambda f, b, s: 60.0 + 10 * s, seeds=(0, 1)))   # seeds 0 and 1
    one = write(tmp_path, "one", result("alt", lambda f, b, s: 90.0 + f, seeds=(2,)))          # seed 2
    old = write(tmp_path, "old", result("random", lambda f, b, s: 50.0))
    out = tmp_path / "cmp.json"
    assert compare_sets.main([f"{two}:alt@0+{two}:alt@1+{one}:alt@2", f"{old}:random", "--out", str(out)]) == 0
    got = json.loads(out.read_text())["by_budget"]["1"]["per_fold"]
    assert [got[str(f)][0] for f in FOLDS] == pytest.approx([(60.0 + 70.0 + 90.0 + f) / 3 for f in FOLDS])
    with pytest.raises(UserError, match="no cells of downstream seed"):
        compare_sets.main([f"{two}:alt@2", f"{old}:random"])
    with pytest.raises(UserError, match="comma-separated integers"):
        compare_sets.main([f"{two}:alt@x", f"{old}:random"])
    with pytest.raises(UserError, match="PATH:SET@SEEDS"):
        compare_sets.main([f"{two}:alt@", f"{old}:random"])
