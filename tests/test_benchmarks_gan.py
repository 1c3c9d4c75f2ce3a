"""Tests of the benchmark scripts (gan_profile, lambda_sweep(_test), gan_att_choice, same_cells, gan_seeds,
truncation, config_choice, time_mean_moments) on tiny data."""
import functools
import json
from pathlib import Path

import pytest
import torch

from benchmark_scripts import BENCH, load_benchmark
from gan_fixtures import gan_cfg, tiny_pool, tiny_store
from s3prl_dd.gan.trainer import GANTrainer
from s3prl_dd.gan.config import resolve_config
from s3prl_dd.utils import load_yaml, save_yaml

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    root = tmp_path_factory.mktemp("bench")
    store = tiny_store(root / "store")
    return {"root": root, "store": store, "pool": tiny_pool(store, root / "pool")}


def test_profile_phases_sum_to_the_step_and_leave_training_unchanged(env, tmp_path):
    bench = load_benchmark("gan_profile")
    out = tmp_path / "p.json"
    assert bench.main(["--configs", "gan_mlp_cpu", "--dim", "8", "--steps", "2", "--per-session", "4",
                       "--frames", "8", "-o", "optim.batch_size=8,,optim.n_critic=2", "--out", str(out)]) == 0
    r = json.loads(out.read_text())
    assert {"dim", "steps", "phases", "results", "env"} <= set(r) and r["env"]["threads"] == 1
    row = r["results"][0]
    assert row["config"] == "gan_mlp_cpu" and row["D"] == 8 and row["g_params"] > 0 and row["d_params"] > 0
    assert set(row["phases"]) == set(bench.PHASES)
    assert sum(p["ms_per_step"] for p in row["phases"].values()) == pytest.approx(row["ms_per_step"])
    calls = {k: p["calls_per_step"] for k, p in row["phases"].items()}
    assert calls["real"] == 3 and calls["critic_fake"] == calls["gp"] == calls["critic_bwd"] == 2
    assert calls["g_fwd"] == calls["g_bwd"] == 1 and calls["teacher"] == 2  # L_SML: real and fake side

    # The wrappers only time: a profiled trainer ends where a plain one does, bit for bit, and
    # the module-level patches are gone afterwards.
    cfg = resolve_config(gan_cfg("gan_att", steps=10))
    plain, timed = (GANTrainer(cfg, env["store"], "fold1", bench.TeacherPool.load(env["pool"]), torch.device("cpu"))
                    for _ in range(2))
    for _ in range(3):
        plain.train_step()
    bench.profile_trainer(timed, steps=1, warmup=2)
    for a, b in zip(plain.G.state_dict().values(), timed.G.state_dict().values()):
        assert torch.equal(a, b)
    assert bench.losses.gradient_penalty.__module__ == "s3prl_dd.gan.losses"


def test_lambda_sweep_chooses_best_dev_pair_and_reuses_runs(env, tmp_path, capsys):
    bench = load_benchmark("lambda_sweep")
    cfg = tmp_path / "gan.yaml"
    save_yaml(gan_cfg("gan_mlp", steps=2), cfg)
    out, work = tmp_path / "s.json", tmp_path / "work"
    args = ["--store", str(env["store"].path), "--folds", "1", "--config", str(cfg), "--lambda-div", "0,1",
            "--lambda-sml", "1", "--pool-profile", "fast", "--pool-overrides",
            "runner.total_steps=12,,runner.eval_step=6,,runner.log_step=6,,pool.seeds=[0],,"
            "pool.checkpoints_per_seed=2,,pool.first_step=3", "--work", str(work), "--out", str(out)]
    assert bench.main(args) == 0
    r = json.loads(out.read_text())
    assert {"runs", "choice", "grid", "folds", "lambda_div", "lambda_sml", "env"} <= set(r)
    runs = r["runs"]
    assert [(x["lambda_div"], x["lambda_sml"]) for x in runs] == [(0.0, 1.0), (1.0, 1.0)]
    for x in runs:
        assert [s for s, _ in x["dev_curve"]] == [2] and x["dev_curve"][0][1] == x["best_dev_uar"]
        logged = [json.loads(ln) for ln in (Path(x["run_dir"]) / "metrics.jsonl").read_text().splitlines()]
        assert x["wasserstein_curve"] == [[m["step"], m["critic/wasserstein"]] for m in logged
                                          if "critic/wasserstein" in m] and x["wasserstein_curve"]
        assert load_yaml(Path(x["run_dir"]) / "config.yaml")["loss"]["lambda_div"] == x["lambda_div"]
    best = max(runs, key=lambda x: (x["best_dev_uar"], -x["lambda_div"], -x["lambda_sml"]))
    chosen = r["choice"]["fold1"]
    assert (chosen["lambda_div"], chosen["lambda_sml"]) == (best["lambda_div"], best["lambda_sml"])
    # Rerun: both GANs are read back from --work, nothing trained. Give the pair that lost a better
    # recorded dev score (tiny GANs often tie at chance), and the choice must follow it.
    loser = next(x for x in runs if x is not best)
    res = Path(loser["run_dir"]) / "result.json"
    res.write_text(json.dumps({**json.loads(res.read_text()), "best_dev_uar": best["best_dev_uar"] + 0.1}))
    assert bench.main(args) == 0
    r = json.loads(out.read_text())
    assert [x["reused"] for x in r["runs"]] == [True, True]
    assert r["choice"]["fold1"]["lambda_div"] == loser["lambda_div"]
    assert r["choice"]["fold1"]["best_dev_uar"] == pytest.approx(best["best_dev_uar"] + 0.1)
    assert bench.main(args[:-4] + ["-o", "optim.lr_g=0.5", "--work", str(work), "--out", str(out)]) == 2
    assert "another recipe" in capsys.readouterr().err


def test_lambda_sweep_choice_breaks_ties_to_smaller_lambdas():
    choose = load_benchmark("lambda_sweep").choose
    runs = [{"lambda_div": a, "lambda_sml": b, "best_dev_uar": u}
            for a, b, u in [(10, 0, 0.5), (1, 10, 0.6), (1, 1, 0.6), (0, 0, 0.4)]]
    assert (choose(runs)["lambda_div"], choose(runs)["lambda_sml"]) == (1, 1)


def test_gan_att_choice_crop_uar_is_seeded_and_scores_every_length(env):
    bench = load_benchmark("gan_att_choice")
    store = env["store"]
    fold = store.fold_names()[0]
    r = bench.crop_uar(store, fold)
    assert set(r) == {"16", "32", "64", "128", "whole"} and all(0.0 <= v <= 1.0 for v in r.values())
    assert bench.crop_uar(store, fold) == r  # seeded
    # every candidate config resolves with its overrides
    for cfg, over in bench.CANDIDATES.values():
        assert resolve_config(str(cfg), over.replace("model.D=auto", "model.D=8"))["model"]["arch"] == "gan_att"


def test_same_cells_counts_shared_cells_and_names_those_that_differ(tmp_path):
    same_cells = load_benchmark("same_cells")
    rec = {"fold": 1, "seed": 0, "downstream": "linear", "source": "random", "arch": None, "variant": None,
           "gan_seed": None, "ppc": 5, "balance": "balanced", "recipe": "r1", "predictions": "0123", "test_uar": 50.0}
    a = [rec, {**rec, "ppc": 20, "predictions": "0000", "test_uar": 25.0}, {**rec, "fold": 2}]
    b = [rec, {**rec, "ppc": 20, "predictions": "0001", "test_uar": 40.0}, {**rec, "recipe": "r2"}]
    for name, recs in (("a", a), ("b", b)):
        (tmp_path / f"{name}.json").write_text(json.dumps({"records": recs}))
    res = same_cells.compare(tmp_path / "a.json", tmp_path / "b.json")
    assert (res["shared"], res["identical_predictions"], res["max_test_uar_gap"]) == (2, 1, 15.0)
    assert [d["ppc"] for d in res["differing"]] == [20]


def _cell(fold, seed, source, uar, **kw):
    gan = {"arch": "gan_mlp", "variant": kw.pop("variant"), "gan_seed": seed} if source == "gan" else {}
    return {"fold": fold, "seed": seed, "downstream": "linear", "source": source, "arch": None, "variant": None,
            "gan_seed": None, "ppc": 1, "balance": "balanced", "recipe": "r", "predictions": f"{uar}",
            "test_uar": uar, **gan, **kw}


def test_gan_seeds_pools_runs_and_pairs_fold_means_over_every_gan_seed(tmp_path):
    bench = load_benchmark("gan_seeds")
    a, b = [], []
    for f in (1, 2, 3):
        for s in (0, 1, 2):
            cells = [_cell(f, s, "random", 50.0 + s), _cell(f, s, "gan", 60.0 + f + 3 * s, variant="div_sml"),
                     _cell(f, s, "gan", 40.0, variant="baseline"),
                     _cell(f, s, "real", 80.0 + f, ppc="full", balance="imbalanced")]
            (a if s < 2 else b).extend(cells)
    b.append(a[0])  # a shared cell that agrees is counted once
    b.append(_cell(1, 7, "real", 10.0, ppc="full", balance="imbalanced"))  # no GAN on seed 7: left out
    for name, recs in (("a", a), ("b", b)):
        (tmp_path / f"{name}.json").write_text(json.dumps({"records": recs}))
    res = bench.analyse(bench.pooled([tmp_path / "a.json", tmp_path / "b.json"]), "gan_mlp", "linear")
    assert res["gan_seeds"] == [0, 1, 2] and res["downstream_seeds"] == [0, 1, 2]
    row = res["by_budget"]["1"]
    assert row["paired"]["div_sml - random"]["a_fold_uar"] == [64.0, 65.0, 66.0]  # 60 + f + mean(0, 3, 6)
    assert row["paired"]["div_sml - random"]["mean_diff"] == pytest.approx(14.0)
    assert row["paired"]["real - div_sml"]["a_fold_uar"] == [81.0, 82.0, 83.0]
    assert row["paired"]["div_sml - random"]["b_fold_uar"] == [51.0, 51.0, 51.0]  # a[0] once, not twice
    assert row["spread"]["div_sml"]["mean_std_over_seeds"] == pytest.approx(3.0)
    assert row["spread"]["baseline"]["mean_std_over_seeds"] == 0.0 and row["spread"]["random"]["seeds_per_fold"] == [3]
    only = bench.analyse([r for r in a if r.get("variant") != "baseline"], "gan_mlp", "linear")
    assert only["variants"] == ["div_sml"] and set(only["by_budget"]["1"]["paired"]) == {"div_sml - random", "real - div_sml"}
    fewer = bench.analyse([r for r in a if r.get("variant") != "baseline" or r["seed"] == 0], "gan_mlp", "linear")
    vs_base = fewer["by_budget"]["1"]["paired"]["div_sml - baseline"]  # a Baseline at GAN seed 0 only
    assert vs_base["seeds"] == [0] and vs_base["a_fold_uar"] == [61.0, 62.0, 63.0]  # seed 0's, not mean(0, 1)
    assert fewer["by_budget"]["1"]["paired"]["div_sml - random"]["seeds"] == [0, 1]
    five = [{**r, "ppc": 5} for r in a if r["source"] == "gan"]  # GAN rows at 5 ppc, no random subset there
    assert list(bench.analyse(a + five, "gan_mlp", "linear", budgets=[1])["by_budget"]) == ["1"]
    b.append({**a[1], "predictions": "different"})
    (tmp_path / "b.json").write_text(json.dumps({"records": b}))
    with pytest.raises(SystemExit, match="disagree"):
        bench.pooled([tmp_path / "a.json", tmp_path / "b.json"])


def test_lambda_sweep_test_labels_cells_with_the_sweeps_own_arch(tmp_path):
    bench = load_benchmark("lambda_sweep_test")
    run = tmp_path / "run"
    run.mkdir()
    save_yaml({"model": {"arch": "gan_att"}}, run / "config.yaml")
    assert bench.sweep_arch({"runs": [{"run_dir": str(run)}]}) == "gan_att"
    cells = bench.cells_for(1, [1], [0], "gan_att")
    assert {c["arch"] for c in cells if c["source"] == "gan"} == {"gan_att"}
    assert {c["set"] for c in cells if c["source"] == "gan"} == {"baseline", "tuned"}


def test_truncation_chooses_psi_on_dev_only_and_runs_test_cells_at_the_choice(env, tmp_path):
    from s3prl_dd.gan.checkpoint import export_generator
    from s3prl_dd.gan.models import build_gan
    from s3prl_dd.protocol import LABELS
    from s3prl_dd.utils import UserError

    bench = load_benchmark("truncation")
    run = tmp_path / "run"
    torch.manual_seed(0)
    cfg = gan_cfg("gan_mlp")["model"]
    g, _ = build_gan(cfg)
    mean, std = env["store"].stats("fold1")
    gan_dir = run / "gans" / "gan_mlp-div_sml-fold1-g3" / "00000-x"
    gan_dir.mkdir(parents=True)
    export_generator(gan_dir / "generator.pt", g, cfg, torch.from_numpy(mean), torch.from_numpy(std), LABELS,
                     [8, 8, 8, 8], {"representation": {"kind": "hidden_state", "layer": -1}, "dim": 8,
                                    "upstream": "fbank_no_cmvn", "downsample_rate": 160, "fold": "fold1", "step": 1})
    save_yaml({"folds": [1, 2]}, run / "config.yaml")  # fold 2's GAN never finished: left out
    for f in ("config.yaml", "result.json"):  # a finished GAN run, as the pipeline leaves it
        (gan_dir / f).write_text("{}")
    (run / "gans" / "gan_mlp-div_sml-fold2-g3" / "00000-x").mkdir(parents=True)
    work, out = tmp_path / "work", tmp_path / "t.json"
    args = ["--run", str(run), "--gan", "gan_mlp-div_sml-g3", "--store", str(env["store"].path), "--psi", "1,0.5",
            "--budgets", "2", "--draws", "2", "--workers", "1", "--er-overrides", "runner.patience=100",
            "--work", str(work), "--out", str(out)]
    bench.main(args)
    r = json.loads(out.read_text())
    assert r["arch"] == "gan_mlp" and r["gan_seed"] == 3 and r["folds"] == [1]
    dev = r["dev_scores"]
    assert len(dev) == 4 and all("test_uar" not in d for d in dev)  # selection never trains with test
    assert {d["draw"] for d in dev} == {0, 1}
    mean_of = {p: sum(d["dev_uar"] for d in dev if d["psi"] == p) / 2 for p in (1.0, 0.5)}
    best = max(mean_of, key=lambda p: (round(mean_of[p], 6), p))
    assert r["choice"] == {"fold1": {"2": best}}
    sets = {x["set"]: x for x in r["records"]}
    assert set(sets) == {"real", "random", "plain", "truncated"}
    assert sets["plain"]["psi"] == 1.0 and sets["truncated"]["psi"] == best
    # Rerun: results are read back; make the other psi win on dev and the test cell follows it.
    other = 0.5 if best == 1.0 else 1.0
    for f in (work / "dev").glob(f"*-psi{other}-d*.json"):
        f.write_text(json.dumps({**json.loads(f.read_text()), "dev_uar": 101.0}))
    bench.main(args)
    r = json.loads(out.read_text())
    assert r["choice"]["fold1"]["2"] == other
    assert {x["set"]: x["psi"] for x in r["records"]}["truncated"] == other
    with pytest.raises(UserError, match="another recipe"):  # cached results of another ER recipe are not reused
        bench.main(args[:-6] + ["--er-overrides", "runner.patience=50", "--work", str(work), "--out", str(out)])


def test_truncation_choice_breaks_ties_to_the_larger_psi():
    choose = load_benchmark("truncation").choose
    scores = [{"psi": p, "dev_uar": u} for p, u in [(1.0, 60), (1.0, 70), (0.5, 70), (0.5, 60), (0.25, 50)]]
    assert choose(scores) == 1.0
    assert choose(scores + [{"psi": 0.25, "dev_uar": 100}]) == 0.25


def test_a_work_dir_takes_more_folds_of_the_same_generators_but_not_another_generator(tmp_path):
    from s3prl_dd.utils import UserError

    keep = load_benchmark("truncation").keep_recipe
    keep(tmp_path, {"generators": {"fold4": "a4.pt", "fold5": "a5.pt"}, "store": "s", "er_overrides": None})
    keep(tmp_path, {"generators": {f"fold{f}": f"a{f}.pt" for f in range(1, 6)}, "store": "s", "er_overrides": None})
    recipe = json.loads((tmp_path / "recipe.json").read_text())
    assert recipe["generators"] == {f"fold{f}": f"a{f}.pt" for f in range(1, 6)}
    for other in ({"generators": {"fold4": "b4.pt"}}, {"store": "t"}, {"er_overrides": "runner.patience=1"}):
        with pytest.raises(UserError, match="another recipe"):  # fold4's cached draws belong to a4.pt
            keep(tmp_path, {"generators": {"fold4": "a4.pt"}, "store": "s", "er_overrides": None, **other})


def _finished_gan(env, run_dir, seed, dev_uar):
    """A random GAN-MLP exported as a finished run (generator.pt, result.json with its dev UAR)."""
    from s3prl_dd.gan.checkpoint import export_generator
    from s3prl_dd.gan.models import build_gan
    from s3prl_dd.protocol import LABELS

    cfg = gan_cfg("gan_mlp")["model"]
    mean, std = env["store"].stats("fold1")
    torch.manual_seed(seed)
    run_dir.mkdir(parents=True)
    export_generator(run_dir / "generator.pt", build_gan(cfg)[0], cfg, torch.from_numpy(mean), torch.from_numpy(std),
                     LABELS, [8, 8, 8, 8], {"representation": {"kind": "hidden_state", "layer": -1}, "dim": 8,
                                            "upstream": "fbank_no_cmvn", "downsample_rate": 160, "fold": "fold1", "step": 1})
    (run_dir / "result.json").write_text(json.dumps({"best_dev_uar": dev_uar, "best_step": 1, "step": 2, "train_seconds": 1.0}))
    (run_dir / "config.yaml").write_text("{}")


def _finished_sweep(env, tmp_path, run_dir, seed, dev_uar) -> str:
    """A finished GAN run and its one-GAN lambda_sweep.py JSON (fold 1)."""
    _finished_gan(env, run_dir, seed, dev_uar)
    sweep = tmp_path / f"{run_dir.name}.json"
    sweep.write_text(json.dumps({"runs": [{"fold": 1, "run_dir": str(run_dir)}]}))
    return str(sweep)


def test_truncation_takes_a_one_pair_sweep_under_a_runs_cell_recipe(env, tmp_path):
    from s3prl_dd.utils import UserError

    bench = load_benchmark("truncation")
    run, gan_run = tmp_path / "run", tmp_path / "sweep_gan"
    _finished_gan(env, run / "gans" / "gan_mlp-div_sml-fold1-g0" / "00000-x", 0, 0.5)
    save_yaml({"folds": [1], "name": "the_run"}, run / "config.yaml")
    (run / "store").symlink_to(env["store"].path)
    _finished_gan(env, gan_run, 1, 0.6)
    save_yaml({"model": {"arch": "gan_mlp"}, "train": {"seed": 4}}, gan_run / "config.yaml")
    sweep = tmp_path / "sweep.json"  # no Baseline pair: only the GAN the sweep chose
    sweep.write_text(json.dumps({"store": str(run / "store"), "runs": [{"fold": 1, "run_dir": str(gan_run)}],
                                 "choice": {"fold1": {"run_dir": str(gan_run)}}}))
    common = ["--psi", "1,0.5", "--budgets", "2", "--draws", "1", "--workers", "1", "--er-overrides", "runner.patience=100"]
    bench.main(["--sweep", str(sweep), "--run", str(run), *common, "--work", str(tmp_path / "w1"), "--out", str(tmp_path / "a.json")])
    bench.main(["--run", str(run), "--gan", "gan_mlp-div_sml-g0", *common, "--work", str(tmp_path / "w2"),
                "--out", str(tmp_path / "b.json")])
    a, b = (json.loads((tmp_path / f"{n}.json").read_text()) for n in "ab")
    assert a["gan_seed"] == 4 and a["generators"] == {"fold1": str(gan_run / "generator.pt")}
    for name in ("random", "real"):  # the run's own cells: the same recipe and record either way
        ra, rb = ({x["set"]: x for x in r["records"]}[name] for r in (a, b))
        assert ra["recipe"] == rb["recipe"] and ra["predictions"] == rb["predictions"]
    sweep.write_text(json.dumps({**json.loads(sweep.read_text()), "store": str(tmp_path / "elsewhere")}))
    with pytest.raises(UserError, match="not on"):
        bench.main(["--sweep", str(sweep), "--run", str(run), *common, "--work", str(tmp_path / "w3"), "--out", str(tmp_path / "c.json")])
    with pytest.raises(SystemExit):
        bench.main(["--sweep", str(sweep), "--gan", "gan_mlp-div_sml-g0", *common, "--work", str(tmp_path / "w3"), "--out", "x"])


def test_config_choice_keeps_the_better_dev_gan_per_fold_and_shares_its_test_cells(env, tmp_path):
    from s3prl_dd.utils import UserError

    bench = load_benchmark("config_choice")
    gan = functools.partial(_finished_gan, env)
    run = tmp_path / "run"
    gan(run / "gans" / "gan_mlp-div_sml-fold1-g0" / "00000-x", 0, 0.5)
    save_yaml({"folds": [1]}, run / "config.yaml")
    (run / "store").symlink_to(env["store"].path)
    sweep = tmp_path / "sweep.json"

    def alt_scoring(dev_uar):
        alt = tmp_path / f"alt{dev_uar}"
        gan(alt, 1, dev_uar)
        sweep.write_text(json.dumps({"runs": [{"fold": 1, "run_dir": str(alt)}]}))

    alt_scoring(0.7)
    work, out = tmp_path / "work", tmp_path / "c.json"
    args = ["--run", str(run), "--gan", "gan_mlp-div_sml-g0", "--alt", str(sweep), "--budgets", "2", "--workers", "1",
            "--er-overrides", "runner.patience=100", "--work", str(work), "--out", str(out)]
    bench.main(args)
    r = json.loads(out.read_text())
    assert r["choice"] == {"fold1": "alt"} and r["alt_gans"]["1"]["best_dev_uar"] == 70.0
    assert r["dev_means"] == {"grid": 50.0, "alt": 70.0}
    sets = {x["set"]: x for x in r["records"]}
    assert set(sets) == {"real", "random", "grid", "alt", "chosen"}
    assert sets["chosen"]["predictions"] == sets["alt"]["predictions"]
    assert len(list((work / "cells").glob("*.json"))) == 4  # the chosen cell is the alt cell's file, run once
    with pytest.raises(UserError, match="another recipe"):  # other generators: a new --work
        alt_scoring(0.4)
        bench.main(args)
    work2 = tmp_path / "work2"
    bench.main(args[:-4] + ["--work", str(work2), "--out", str(out)])  # the grid's GAN wins on dev
    r = json.loads(out.read_text())
    sets = {x["set"]: x for x in r["records"]}
    assert r["choice"] == {"fold1": "grid"} and sets["chosen"]["predictions"] == sets["grid"]["predictions"]
    # the run's own cells under the same recipe are copied, not rerun; another recipe's are rerun
    (run / "cells").mkdir()
    for name, recipe in (("random", None), ("real", "another")):
        rec = json.loads(next((work2 / "cells").glob(f"*-{name}-*.json")).read_text())
        rec.update(test_uar=12.5, recipe=recipe or rec["recipe"])
        (run / "cells" / f"{bench.cell_key(rec)}.json").write_text(json.dumps(rec))
    bench.main(args[:-4] + ["--work", str(tmp_path / "work3"), "--out", str(out)])
    sets = {x["set"]: x for x in json.loads(out.read_text())["records"]}
    assert sets["random"]["test_uar"] == 12.5 and sets["real"]["test_uar"] != 12.5
    with pytest.raises(SystemExit):  # dev draws train linear models
        bench.main(args + ["--draws", "2", "--downstream", "deep"])
    with pytest.raises(UserError, match="one GAN per fold"):
        sweep.write_text(json.dumps({"runs": [{"fold": 1, "run_dir": "a"}, {"fold": 1, "run_dir": "b"}]}))
        bench.main(args)


def test_config_choice_takes_several_alternatives_their_mean_and_their_baselines(env, tmp_path):
    from s3prl_dd.utils import UserError

    bench = load_benchmark("config_choice")
    assert bench.choose({"grid": {1: {"best_dev_uar": 70}}, "alt": {1: {"best_dev_uar": 70}}}, 1) == "grid"
    assert bench.choose({"grid": {1: {"best_dev_uar": 60}}, "alt": {1: {"best_dev_uar": 70}},
                         "alt2": {1: {"best_dev_uar": 70}}}, 1) == "alt"

    gan = functools.partial(_finished_sweep, env, tmp_path)

    run = tmp_path / "run"
    gan(run / "gans" / "gan_mlp-div_sml-fold1-g0" / "00000-x", 0, 0.5)
    save_yaml({"folds": [1]}, run / "config.yaml")
    (run / "store").symlink_to(env["store"].path)
    alts = ",".join([gan(tmp_path / "a1", 1, 0.6), gan(tmp_path / "a2", 2, 0.8)])
    work, out = tmp_path / "work", tmp_path / "c.json"
    bench.main(["--run", str(run), "--gan", "gan_mlp-div_sml-g0", "--alt", alts, "--budgets", "2", "--workers", "1",
                "--er-overrides", "runner.patience=100", "--work", str(work), "--out", str(out)])
    r = json.loads(out.read_text())
    assert r["choice"] == {"fold1": "alt2"} and r["dev_means"] == {"grid": 50.0, "alt": 60.0, "alt2": 80.0}
    assert r["alt_gans"]["1"]["best_dev_uar"] == 60.0 and r["alt2_gans"]["1"]["best_dev_uar"] == 80.0
    sets = {x["set"]: x for x in r["records"]}
    assert set(sets) == {"real", "random", "grid", "alt", "alt2", "chosen"}
    assert sets["chosen"]["predictions"] == sets["alt2"]["predictions"]
    assert len(list((work / "cells").glob("*.json"))) == 5  # real, random, grid, alt, alt2: chosen is alt2's file
    assert "alt2 - alt" in r["summary"]["by_budget"]["2"]["paired"]
    args = ["--run", str(run), "--gan", "gan_mlp-div_sml-g0", "--alt", alts, "--budgets", "2", "--workers", "1",
            "--er-overrides", "runner.patience=100", "--work", str(work), "--out", str(out), "--average"]
    bench.main(args)
    r = json.loads(out.read_text())
    sets = {x["set"]: x for x in r["records"]}
    assert sets["alt_mean"]["test_uar"] == pytest.approx((sets["alt"]["test_uar"] + sets["alt2"]["test_uar"]) / 2)
    assert r["summary"]["by_budget"]["2"]["sets"]["alt_mean"]["mean"] == pytest.approx(sets["alt_mean"]["test_uar"])
    assert "alt_mean - random" in r["summary"]["by_budget"]["2"]["paired"]

    n_cells = len(list((work / "cells").glob("*.json")))
    bases = ",".join([gan(tmp_path / "b1", 3, 0.9), gan(tmp_path / "b2", 4, 0.95)])
    with pytest.raises(UserError, match="one per alternative"):
        bench.main(args + ["--baseline", bases.split(",")[0]])
    bench.main(args + ["--baseline", bases])  # the same --work: adding baselines keeps the cached cells
    r = json.loads(out.read_text())
    assert len(list((work / "cells").glob("*.json"))) == n_cells + 2
    assert r["choice"] == {"fold1": "alt2"}  # a baseline is never a candidate, whatever its dev UAR
    sets = {x["set"]: x for x in r["records"]}
    assert sets["baseline_mean"]["test_uar"] == pytest.approx(
        (sets["baseline"]["test_uar"] + sets["baseline2"]["test_uar"]) / 2)
    paired = r["summary"]["by_budget"]["2"]["paired"]
    assert {"alt - baseline", "alt2 - baseline2", "alt_mean - baseline_mean", "baseline - random"} <= set(paired)
    assert r["baseline_gans"]["1"]["best_dev_uar"] == 90.0


def test_config_choice_reuse_pairs_new_baselines_with_alternatives_whose_runs_are_gone(env, tmp_path):
    import shutil

    from s3prl_dd.utils import UserError

    bench = load_benchmark("config_choice")
    gan = functools.partial(_finished_sweep, env, tmp_path)
    run = tmp_path / "run"
    grid_dir = run / "gans" / "gan_mlp-div_sml-fold1-g0" / "00000-x"
    gan(grid_dir, 0, 0.5)
    save_yaml({"folds": [1]}, run / "config.yaml")
    (run / "store").symlink_to(env["store"].path)
    alts = ",".join([gan(tmp_path / "a1", 1, 0.6), gan(tmp_path / "a2", 2, 0.8)])
    common = ["--run", str(run), "--gan", "gan_mlp-div_sml-g0", "--alt", alts, "--budgets", "2", "--workers", "1",
              "--er-overrides", "runner.patience=100", "--average"]
    first = tmp_path / "first.json"
    bench.main(common + ["--work", str(tmp_path / "w1"), "--out", str(first)])
    old = {x["set"]: x for x in json.loads(first.read_text())["records"]}

    shutil.rmtree(tmp_path / "a1")   # an alternative's run is deleted; the grid's GAN is retrained
    shutil.rmtree(grid_dir)
    gan(grid_dir, 3, 0.55)
    bases = ",".join([gan(tmp_path / "b1", 4, 0.4), gan(tmp_path / "b2", 5, 0.45)])
    with pytest.raises(UserError, match="its GAN run is gone"):
        bench.main(common + ["--baseline", bases, "--work", str(tmp_path / "w2"), "--out", str(tmp_path / "x.json")])
    out, work = tmp_path / "second.json", tmp_path / "w3"
    bench.main(common + ["--baseline", bases, "--reuse", str(first), "--work", str(work), "--out", str(out)])
    r = json.loads(out.read_text())
    new = {x["set"]: x for x in r["records"]}
    assert r["alt_gans"]["1"]["best_dev_uar"] == 60.0 and r["alt_gans"]["1"]["reused_from"] == str(first)
    for name in ("real", "random", "alt", "alt2", "alt_mean"):   # taken from the first JSON, not rerun
        assert new[name]["test_uar"] == old[name]["test_uar"]
    assert new["alt"]["reused_from"] == str(first) and "reused_from" not in new["grid"]
    assert r["grid_gans"]["1"]["best_dev_uar"] == pytest.approx(55.0)  # the retrained grid GAN is tested anew
    assert {"baseline", "baseline2", "baseline_mean"} <= set(new) and r["choice"] == {"fold1": "alt2"}
    assert "alt_mean - baseline_mean" in r["summary"]["by_budget"]["2"]["paired"]
    with pytest.raises(UserError, match="not .* with deep"):
        bench.main(common + ["--reuse", str(first), "--downstream", "deep", "--work", str(tmp_path / "w4"), "--out", "x"])
    # under another ER recipe nothing is taken, and a GAN whose run is gone cannot be tested anew
    other = [*common[:-2], "runner.patience=50", "--average"]
    with pytest.raises(UserError, match="cannot be tested"):
        bench.main(other + ["--baseline", bases, "--reuse", str(first), "--work", str(tmp_path / "w5"), "--out", "x"])


def test_config_choice_on_dev_draws_chooses_per_budget_without_test(env, tmp_path):
    bench = load_benchmark("config_choice")
    scores = [{"set": n, "fold": 1, "ppc": b, "dev_uar": u} for n, b, u in
              [("grid", 2, 60), ("grid", 2, 70), ("alt", 2, 80), ("alt", 2, 40), ("grid", 5, 50), ("alt", 5, 60)]]
    assert bench.choose_on_draws(scores, ["grid", "alt"], 1, 2) == "grid"  # 65 vs 60
    assert bench.choose_on_draws(scores, ["grid", "alt"], 1, 5) == "alt"

    gan = functools.partial(_finished_sweep, env, tmp_path)

    run = tmp_path / "run"
    gan(run / "gans" / "gan_mlp-div_sml-fold1-g0" / "00000-x", 0, 0.5)
    save_yaml({"folds": [1]}, run / "config.yaml")
    (run / "store").symlink_to(env["store"].path)
    alt = gan(tmp_path / "a1", 1, 0.9)
    work, out = tmp_path / "work", tmp_path / "c.json"
    bench.main(["--run", str(run), "--gan", "gan_mlp-div_sml-g0", "--alt", alt, "--budgets", "2,3", "--draws", "2",
                "--workers", "1", "--er-overrides", "runner.patience=100", "--work", str(work), "--out", str(out)])
    r = json.loads(out.read_text())
    dev = r["dev_scores"]
    assert len(dev) == 2 * 2 * 2 and all("test_uar" not in d for d in dev)  # budgets x GANs x draws, dev only
    assert {d["draw"] for d in dev} == {0, 1} and {d["set"] for d in dev} == {"grid", "alt"}
    for b in (2, 3):
        mean_of = {n: sum(d["dev_uar"] for d in dev if d["set"] == n and d["ppc"] == b) / 2 for n in ("grid", "alt")}
        want = "alt" if round(mean_of["alt"], 6) > round(mean_of["grid"], 6) else "grid"
        assert r["dev_choice"]["fold1"][str(b)] == want
        recs = {x["set"]: x for x in r["records"] if x["ppc"] == b}
        assert recs["chosen_dev"]["predictions"] == recs[want]["predictions"]
    assert r["choice"] == {"fold1": "alt"}  # the quick-eval choice is still made and reported
    assert "chosen_dev - chosen" in r["summary"]["by_budget"]["2"]["paired"]


def test_gan_convergence_tells_a_rising_curve_from_a_flat_one(tmp_path):
    bench = load_benchmark("gan_convergence")
    steps = list(range(100, 1001, 100))
    rising = [[s, s / 1000] for s in steps]                       # best at the last step
    flat = [[s, 0.8 if s == 300 else 0.7] for s in steps]          # peaked early, then level
    sweep = {"runs": [{"fold": 1, "steps": 1000, "dev_curve": rising},
                      {"fold": 2, "steps": 1000, "dev_curve": flat}]}
    path, out = tmp_path / "s.json", tmp_path / "c.json"
    path.write_text(json.dumps(sweep))
    assert bench.main([str(path), "--out", str(out)]) == 0
    s = json.loads(out.read_text())["sweeps"][str(path)]
    up, level = s["runs"]
    assert up["at_edge"] and up["best_step"] == 1000 and up["late_rise"] == pytest.approx(1.0 - 0.7)
    assert up["quarter_rise"] == pytest.approx(0.9 - 0.65)         # (0.8, 0.9, 1.0) vs (0.6, 0.7)
    assert not level["at_edge"] and level["best_step"] == 300 and level["late_rise"] == 0
    assert s["at_edge"] == 1 and s["late_rise_positive"] == 1


def test_gan_convergence_refuses_a_sweep_without_curves(tmp_path):
    bench = load_benchmark("gan_convergence")
    path = tmp_path / "s.json"
    path.write_text(json.dumps({"runs": [{"fold": 1, "steps": 10, "run_dir": "r"}]}))
    with pytest.raises(bench.UserError, match="no dev_curve"):
        bench.main([str(path)])


def test_gan_convergence_reads_a_pipeline_runs_gans(tmp_path):
    bench = load_benchmark("gan_convergence")
    curve = lambda peak: [[s, 0.9 if s == peak else 0.5] for s in (250, 500, 750, 1000)]  # noqa: E731
    gans = [{"gan": "gan_att-baseline-fold1-g0", "steps": 1000, "dev_curve": curve(1000)},
            {"gan": "gan_att-baseline-fold2-g0", "steps": 1000, "dev_curve": curve(500)},
            {"gan": "gan_att-div_sml-fold1-g0", "steps": 1000, "dev_curve": curve(250)}]
    path, out = tmp_path / "results.json", tmp_path / "c.json"
    path.write_text(json.dumps({"gans": gans}))
    assert bench.main([f"{path}:gan_att-baseline", "--out", str(out)]) == 0
    s = json.loads(out.read_text())["sweeps"][f"{path}:gan_att-baseline"]
    assert [r["fold"] for r in s["runs"]] == ["fold1-g0", "fold2-g0"]     # the other variant is not read
    assert [r["best_step"] for r in s["runs"]] == [1000, 500] and s["at_edge"] == 1
    with pytest.raises(bench.UserError, match="no GAN named gan_cnn-baseline-fold"):
        bench.main([f"{path}:gan_cnn-baseline"])
    gans[0].pop("dev_curve")                                           # a results.json from before the curves
    path.write_text(json.dumps({"gans": gans}))
    with pytest.raises(bench.UserError, match="no dev_curve"):
        bench.main([f"{path}:gan_att-baseline"])


def test_every_benchmark_script_ends_through_run_main():
    # a script that calls main() bare prints a traceback for a typo in a path
    for script in sorted(BENCH.glob("*.py")):
        text = script.read_text()
        if "from s3prl_dd" in text and '__name__ == "__main__"' in text:
            assert text.rstrip().endswith("run_main(main)"), script.name


def test_time_mean_moments_reads_train_only_and_measures_offset_and_spread(env, tmp_path, monkeypatch):
    from collections import Counter

    import numpy as np

    from s3prl_dd.gan.checkpoint import load_generator
    from s3prl_dd.gan.trainer import train_gan

    tm = load_benchmark("time_mean_moments")
    real = np.random.default_rng(0).standard_normal((50, 3))
    assert tm.moments(real, real, 1.0) == {"offset": 0.0, "spread": 1.0}
    moved = tm.moments(2 * real + 0.5, real, 0.25)
    assert abs(moved["spread"] - 2.0) < 1e-9 and moved["offset"] > 0
    assert abs(tm.moments(real + 0.5, real, 0.25)["offset"] - 2.0) < 1e-9  # 0.5 in every dim / 0.25
    # precision / recall: the same points cover each other; a far cloud covers nothing and is
    # covered by nothing; a collapsed cloud inside the real one is precise but covers little
    assert tm.precision_recall(real, real, 3) == {"precision": 1.0, "recall": 1.0}
    assert tm.precision_recall(real + 100.0, real, 3) == {"precision": 0.0, "recall": 0.0}
    collapsed = tm.precision_recall(real.mean(0) + 0.01 * real, real, 3)
    assert collapsed["precision"] == 1.0 and collapsed["recall"] < 0.5
    assert tm.precision_recall(np.concatenate([real, real + 100.0]), real, 3)["recall"] == 1.0  # first len(real) only

    r = train_gan(gan_cfg(steps=2), env["store"].path, "fold1", env["pool"], out_dir=tmp_path, device="cpu")
    g = load_generator(Path(r["run_dir"]) / "generator.pt")
    store, parts = env["store"], []
    split = store.split
    monkeypatch.setattr(store, "split", lambda fold, part: parts.append(part) or split(fold, part))
    out = tm.fold_moments(store, 1, {"gan": g}, n=6, seed=0, neighbours=2)
    assert set(parts) == {"train"}
    assert set(out["sets"]) == {tm.crop_name(g.T), "gan"}
    names = {v: k for k, v in store.label_map.items()}
    assert out["counts"] == dict(Counter(names[c] for c in store.labels(split(1, "train"))))
    for s in out["sets"].values():
        assert set(s["per_class"]) == set(out["counts"]) and s["offset"] >= 0 and s["spread"] > 0
        assert 0.0 <= s["precision"] <= 1.0 and 0.0 <= s["recall"] <= 1.0
    before = [b.clone() for b in g.generator.buffers()]
    tm.standing_stats(g, batches=2, batch_size=8, seed=0)
    assert not g.generator.training and any(not torch.equal(a, b) for a, b in zip(before, g.generator.buffers()))
