"""benchmarks/splice_folds.py and layer_per_fold.py: a setting chosen per fold, tested by taking
each fold's cells from the run that used that fold's choice."""
import json

import pytest

from benchmark_scripts import load_benchmark
from s3prl_dd.utils import UserError

splice_folds, compare_sets, layer_per_fold = (load_benchmark(n) for n in ("splice_folds", "compare_sets", "layer_per_fold"))
CONFIG = {"upstream": "ge2e", "er": {"profile": "converge"}, "deep_er": {"profile": "converge"}, "pool": {},
          "seeds": [0], "gan_seeds": [0], "gan": {"configs": {"gan_att": "a.yaml"}, "overrides": {}}}


def cell(fold, source, ppc, uar, arch=None, variant=None, labels=None):
    r = {"fold": fold, "seed": 0, "downstream": "linear", "source": source, "arch": arch, "variant": variant,
         "ppc": ppc, "balance": "imbalanced" if ppc == "full" else "balanced", "test_uar": uar, "dev_uar": uar - 1,
         "stopped": "patience", "best_step": 100 * fold, "steps": 400}
    if source == "real":
        r.update(n_train=100 + fold, test_labels=labels or f"0123{fold}")
    return r


def run(folds, layer, uar, sets=("random", "herding"), labels=None, **config):
    records = []
    for f in folds:
        records.append(cell(f, "real", "full", 80.0, labels=labels))
        records += [cell(f, s, b, uar(f, s, b)) for s in sets for b in (1, 5)]
        records += [cell(f, "gan", b, uar(f, "gan", b), "gan_att", "div_sml") for b in (1, 5)]
    gans = [{"gan": f"gan_att-div_sml-fold{f}-g0", "best_dev_uar": layer / 10, "best_step": 250, "steps": 1000,
             "train_seconds": 1.0} for f in folds]
    return {"records": records, "gans": gans, "config": {**CONFIG, **config, "folds": list(folds), "layer": layer}}


def write(tmp_path, stem, data):
    path = tmp_path / f"{stem}.json"
    path.write_text(json.dumps(data))
    return path


def test_a_replaced_fold_takes_the_other_runs_cells_and_kinds_not_in_every_fold_are_dropped(tmp_path):
    base = write(tmp_path, "base", run([1, 2, 3], 2, lambda f, s, b: 50.0 + f + b))
    other = write(tmp_path, "other", run([2], 1, lambda f, s, b: 90.0 + b, sets=("random",)))
    out = tmp_path / "spliced.json"
    assert splice_folds.main(["--base", str(base), "--fold", f"2={other}", "--out", str(out)]) == 0
    got = json.loads(out.read_text())
    assert got["spliced"]["layer_per_fold"] == {"1": 2, "2": 1, "3": 2}
    assert {d["source"] for d in got["spliced"]["dropped_kinds"]} == {"herding"}  # fold 2's run has no herding
    gan = {(r["fold"], r["ppc"]): r["test_uar"] for r in got["records"] if r["source"] == "gan"}
    assert gan == {(1, 1): 52.0, (1, 5): 56.0, (2, 1): 91.0, (2, 5): 95.0, (3, 1): 54.0, (3, 5): 58.0}
    change = got["spliced"]["fold_before_after"]["2"]
    assert change["linear gan_att-div_sml 1"] == [53.0, 91.0] and "linear herding 1" not in change
    assert got["spliced"]["fold_before_after_dev"]["2"]["linear gan_att-div_sml 1"] == [52.0, 90.0]
    done = got["spliced"]["replaced_runs"]["2"]  # fold 2's own runs: their convergence and GAN exports
    assert (done["er_runs"], done["stopped_by_patience"], done["max_best_step_fraction"]) == (5, 5, 0.5)
    assert done["gans"] == {"gan_att-div_sml-fold2-g0": {"best_dev_uar": [0.2, 0.1], "best_step": 250, "steps": 1000,
                                                         "train_seconds": 1.0}}
    # each fold's GAN summary comes from the run its cells come from
    assert {g["gan"]: g["best_dev_uar"] for g in got["gans"]} == {
        "gan_att-div_sml-fold1-g0": 0.2, "gan_att-div_sml-fold2-g0": 0.1, "gan_att-div_sml-fold3-g0": 0.2}
    # the output is a pipeline results.json to compare_sets: fold 2's Δ is the other run's
    cmp_out = tmp_path / "cmp.json"
    assert compare_sets.main([f"{out}:gan_att-div_sml", f"{out}:random", "--out", str(cmp_out)]) == 0
    assert json.loads(cmp_out.read_text())["by_budget"]["1"]["per_fold"]["2"] == [91.0, 91.0]


def test_another_fold_or_another_recipe_is_refused(tmp_path):
    base = write(tmp_path, "base", run([1, 2], 2, lambda f, s, b: 60.0))
    moved = write(tmp_path, "moved", run([2], 1, lambda f, s, b: 60.0, labels="3210"))
    with pytest.raises(UserError, match="not the same fold"):
        splice_folds.main(["--base", str(base), "--fold", f"2={moved}", "--out", str(tmp_path / "o.json")])
    recipe = write(tmp_path, "recipe", run([2], 1, lambda f, s, b: 60.0, er={"profile": "fixed"}))
    with pytest.raises(UserError, match="differs from the base run in er"):
        splice_folds.main(["--base", str(base), "--fold", f"2={recipe}", "--out", str(tmp_path / "o.json")])
    gan = write(tmp_path, "gan", run([2], 1, lambda f, s, b: 60.0, gan={"configs": {"gan_att": "b.yaml"}, "overrides": {}}))
    with pytest.raises(UserError, match="differs from the base run in gan.configs.gan_att"):
        splice_folds.main(["--base", str(base), "--fold", f"2={gan}", "--out", str(tmp_path / "o.json")])
    other_arch = write(tmp_path, "arch", run([2], 1, lambda f, s, b: 60.0,  # an arch it has no cells of may differ
                                             gan={"configs": {"gan_att": "a.yaml", "gan_mlp": "m.yaml"}, "overrides": {}}))
    assert splice_folds.main(["--base", str(base), "--fold", f"2={other_arch}", "--out", str(tmp_path / "o.json")]) == 0
    with pytest.raises(UserError, match="has no cells of fold 1"):
        splice_folds.main(["--base", str(base), "--fold", f"1={write(tmp_path, 'f2', run([2], 1, lambda *_: 60.0))}",
                           "--out", str(tmp_path / "o.json")])
    with pytest.raises(UserError, match="FOLD=PATH"):
        splice_folds.main(["--base", str(base), "--fold", "two", "--out", str(tmp_path / "o.json")])


def test_each_fold_picks_its_own_best_dev_layer_and_a_tie_goes_to_the_first_name(tmp_path):
    def row(layer, dev):  # dev: fold -> the dev UAR of its two seeds
        return {"upstream": "ge2e", "layer": layer,
                "runs": [{"fold": f, "seed": s, "dev_uar": v, "test_uar": 0.0} for f, vs in dev.items() for s, v in enumerate(vs)]}
    # binary fractions, so that fold 1's tie (layers 0 and 2 at 93.75) is exact in floating point
    layers = [row(1, {1: [0.875, 0.9375], 2: [0.96875, 0.95]}), row(2, {1: [0.9375, 0.9375], 2: [0.9375, 0.9375]}),
              row(0, {1: [0.9375, 0.9375], 2: [0.125, 0.125]})]
    src, out = write(tmp_path, "pre", {"layers": layers}), tmp_path / "choice.json"
    assert layer_per_fold.main([str(src), "--out", str(out)]) == 0
    folds = json.loads(out.read_text())["folds"]
    assert (folds["1"]["layer"], folds["2"]["layer"]) == (0, 1)  # fold 1: layers 0 and 2 tie at 93.75
    assert folds["2"]["dev_uar"] == pytest.approx(95.9375)
    with pytest.raises(UserError, match="no 'layers' rows"):
        layer_per_fold.main([str(write(tmp_path, "empty", {"rows": []}))])


# config_choice.py JSONs: GANs of lambda_sweep.py tested under a pipeline run's recipe
def sweep(tmp_path, stem, **recipe):
    data = {"config": "g.yaml", "override": "train.steps=4", "lambda_div": [1.0], "lambda_sml": [1.0],
            "pool_profile": "converge", "pool_overrides": "", "runs": [], **recipe}
    return str(write(tmp_path, stem, data))


def choice_json(folds, run_name, uar, alt, dev=80.0, labels=None):
    records = []
    for f in folds:
        records.append({**cell(f, "real", "full", 80.0, labels=labels), "set": "real"})
        records += [{"fold": f, "seed": 0, "set": s, "ppc": b, "test_uar": uar(f, s, b), "stopped": "patience",
                     "best_step": 2, "steps": 8} for s in ("random", "grid", "alt", "chosen") for b in (1, 5)]

    def gans(d):
        return {str(f): {"generator": "g.pt", "best_dev_uar": d, "best_step": 3, "steps": 4, "train_seconds": 1.0} for f in folds}
    return {"run": f"runs/{run_name}", "gan": "gan_att-div_sml-g0", "alt": alt, "downstream": "linear", "folds": list(folds),
            "budgets": [1, 5], "seeds": [0], "grid_gans": gans(70.0), "alt_gans": gans(dev),
            "choice": {f"fold{f}": "alt" for f in folds}, "summary": {}, "dev_means": {}, "records": records}


def test_a_config_choice_json_is_spliced_with_its_runs_and_sweeps_checked(tmp_path):
    runs = [write(tmp_path, "run_l2", run([1, 2, 3], 2, lambda *_: 0.0, name="r_l2")),
            write(tmp_path, "run_l1", run([2], 1, lambda *_: 0.0, name="r_l1"))]
    base = write(tmp_path, "base", choice_json([1, 2, 3], "r_l2", lambda f, s, b: 50.0 + f + b, sweep(tmp_path, "s2")))
    other = choice_json([2], "r_l1", lambda f, s, b: 90.0 + b, sweep(tmp_path, "s1"), dev=85.0)
    other["choice"]["fold2"] = "grid"
    out = tmp_path / "spliced.json"
    args = ["--base", str(base), "--fold", f"2={write(tmp_path, 'other', other)}", "--out", str(out)]
    assert splice_folds.main([*args, "--run-results", ",".join(map(str, runs))]) == 0
    got = json.loads(out.read_text())
    assert got["spliced"]["layer_per_fold"] == {"1": 2, "2": 1, "3": 2}
    assert got["choice"] == {"fold1": "alt", "fold2": "grid", "fold3": "alt"}
    assert got["alt_gans"]["2"]["best_dev_uar"] == 85.0 and got["alt_gans"]["1"]["best_dev_uar"] == 80.0
    assert got["dev_means"]["grid"] == 70.0 and got["dev_means"]["alt"] == pytest.approx((80 + 85 + 80) / 3)
    assert got["summary"]["by_budget"]["1"]["sets"]["alt"]["mean"] == pytest.approx((52 + 91 + 54) / 3)
    assert got["spliced"]["fold_before_after"]["2"]["alt 5"] == [57.0, 95.0]
    assert got["spliced"]["replaced_runs"]["2"]["gans"]["alt"]["best_dev_uar"] == [80.0, 85.0]
    cmp_out = tmp_path / "cmp.json"  # and compare_sets reads it, fold 2 from the other JSON
    assert compare_sets.main([f"{out}:alt", f"{out}:random", "--out", str(cmp_out)]) == 0
    assert json.loads(cmp_out.read_text())["by_budget"]["5"]["per_fold"]["2"] == [95.0, 95.0]
    with pytest.raises(UserError, match="give that run's results.json with --run-results"):
        splice_folds.main([*args, "--run-results", str(runs[0])])
    with pytest.raises(UserError, match="not the same kind"):
        splice_folds.main(["--base", str(base), "--fold", f"2={runs[1]}", "--out", str(out), "--run-results", str(runs[0])])


def test_a_config_choice_json_of_another_recipe_or_fold_is_refused(tmp_path):
    runs = ",".join(str(write(tmp_path, n, run(f, l, lambda *_: 0.0, name=n))) for n, f, l in (("a", [1, 2], 2), ("b", [2], 1)))
    base = write(tmp_path, "base", choice_json([1, 2], "a", lambda *_: 60.0, sweep(tmp_path, "s")))

    def refused(other, match):
        with pytest.raises(UserError, match=match):
            splice_folds.main(["--base", str(base), "--fold", f"2={write(tmp_path, 'o', other)}",
                               "--out", str(tmp_path / "o.json"), "--run-results", runs])
    refused(choice_json([2], "b", lambda *_: 60.0, sweep(tmp_path, "t", override="train.steps=8")), "alt sweeps")
    refused(choice_json([2], "b", lambda *_: 60.0, sweep(tmp_path, "t"), labels="3210"), "not the same fold")
    refused({**choice_json([2], "b", lambda *_: 60.0, sweep(tmp_path, "t")), "budgets": [1]}, "budgets")
    refused(choice_json([2], "b", lambda *_: 60.0, str(tmp_path / "gone.json")), "sweep .* is missing")
    other_er = str(write(tmp_path, "c", run([2], 1, lambda *_: 0.0, name="c", er={"profile": "fixed"})))
    with pytest.raises(UserError, match="differs from the base run in er"):
        splice_folds.main(["--base", str(base), "--fold", f"2={write(tmp_path, 'o', choice_json([2], 'c', lambda *_: 60.0, sweep(tmp_path, 't')))}",
                           "--out", str(tmp_path / "o.json"), "--run-results", f"{runs},{other_er}"])
