"""The pipeline grid: cells, budgets, and a crash mid-grid that recomputes nothing complete."""
from pathlib import Path

import numpy as np
import pytest
import yaml

from s3prl_dd.pipeline import cells as cells_mod
from s3prl_dd.pipeline import run as run_mod
from s3prl_dd.pipeline.cells import class_counts, enumerate_cells
from s3prl_dd.pipeline.config import for_downstream, load_pipeline_config
from s3prl_dd.pipeline.records import methods, paired_folds
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


@pytest.mark.parametrize("path", sorted((Path(__file__).resolve().parents[1] / "downstream_configs" / "pipeline").glob("*.yaml")),
                         ids=lambda p: p.stem)
def test_shipped_pipeline_configs_validate_and_their_gan_overrides_apply(path):
    from s3prl_dd.gan.config import resolve_config
    from s3prl_dd.utils import config_path

    cfg = load_pipeline_config(path)
    for arch in cfg["gan"]["archs"]:
        over = (cfg["gan"]["overrides"].get(arch) or "").replace("model.D=auto", "model.D=256")
        gan = resolve_config(str(config_path(cfg["gan"]["configs"][arch])), over or None)
        assert gan["model"]["arch"] == arch


def test_a_gans_overrides_may_be_given_as_a_list_since_double_commas_split_o(tmp_path):
    path = write_cfg(tmp_path)
    as_list = load_pipeline_config(path, "gan.overrides.gan_mlp=['train.steps=6','loss.lambda_mm=10.0']")
    assert as_list["gan"]["overrides"]["gan_mlp"] == "train.steps=6,,loss.lambda_mm=10.0"
    with pytest.raises(UserError, match="does not exist"):  # the string form cannot carry a second key
        load_pipeline_config(path, "gan.overrides.gan_mlp='train.steps=6,,loss.lambda_mm=10.0'")

def test_o_takes_a_list_or_mapping_of_unquoted_names_as_the_yaml_configs_write_it(tmp_path):
    path = write_cfg(tmp_path)
    for text in ("distill={gan: {standing_stats: 200}}", "distill={'gan': {'standing_stats': 200}}"):
        assert load_pipeline_config(path, text)["distill"] == {"gan": {"standing_stats": 200}}
    assert load_pipeline_config(path, "gan.variants=[baseline, div_sml]")["gan"]["variants"] == ["baseline", "div_sml"]
    assert load_pipeline_config(path, "gan.variants=['div_sml']")["gan"]["variants"] == ["div_sml"]
    assert load_pipeline_config(path, "budgets=[1, 5]")["budgets"] == [1, 5]
    with pytest.raises(UserError, match=r"expected a list, got '\[baseline' \(e\.g\."):  # unclosed: stays text
        load_pipeline_config(path, "gan.variants=[baseline")


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
    # latent / herding selection only on the generators of gan.distill_archs
    cfg = load_pipeline_config(write_cfg(tmp_path, sources=["gan", "gan_latent"],
                                         gan={**TINY["gan"], "archs": ["gan_mlp", "gan_att"], "distill_archs": ["gan_mlp"]}))
    archs = {(c["source"], c["arch"]) for c in enumerate_cells(cfg)}
    assert archs == {("gan", "gan_mlp"), ("gan", "gan_att"), ("gan_latent", "gan_mlp")}
    with pytest.raises(UserError, match="distill_archs"):
        load_pipeline_config(write_cfg(tmp_path, gan={**TINY["gan"], "distill_archs": ["gan_cnn"]}))
    # a slow downstream may score some archs' generators only; every GAN is still trained
    cfg = load_pipeline_config(write_cfg(tmp_path, sources=["random", "gan"], downstreams=["linear", "deep"],
                                         gan={**TINY["gan"], "archs": ["gan_mlp", "gan_att"]},
                                         per_downstream={"deep": {"archs": ["gan_att"], "budgets": [1]}}))
    by_ds = {ds: {c["arch"] for c in enumerate_cells(cfg) if c["downstream"] == ds and c["source"] == "gan"}
             for ds in ("linear", "deep")}
    assert by_ds == {"linear": {"gan_mlp", "gan_att"}, "deep": {"gan_att"}}
    assert {sel.get("arch") for _, sel in methods(for_downstream(cfg, "deep"))} == {None, "gan_att"}  # report rows
    assert cfg["gan"]["archs"] == ["gan_mlp", "gan_att"]
    with pytest.raises(UserError, match="per_downstream.deep.archs"):
        load_pipeline_config(write_cfg(tmp_path, downstreams=["linear", "deep"], gan={**TINY["gan"], "archs": ["gan_mlp"]},
                                       per_downstream={"deep": {"archs": ["gan_att"]}}))
    with pytest.raises(UserError, match="probe"):
        load_pipeline_config(write_cfg(tmp_path, probe={"enabled": True, "colour": 1}))
    with pytest.raises(UserError, match="variant"):
        load_pipeline_config(write_cfg(tmp_path, gan={"variants": ["nope"]}))
    with pytest.raises(UserError, match="unknown pipeline keys"):
        load_pipeline_config(write_cfg(tmp_path, colour="blue"))


def test_per_downstream_distill_options_go_over_the_shared_ones(tmp_path, monkeypatch):
    cfg = load_pipeline_config(write_cfg(tmp_path, downstreams=["linear", "deep"], distill={"dm": {"iterations": 7}},
                                         per_downstream={"deep": {"distill": {"dm": {"frames": True},
                                                                              "gan_latent": {"steps": 3}}}}))
    assert for_downstream(cfg, "linear")["distill"] == {"dm": {"iterations": 7}}
    assert for_downstream(cfg, "deep")["distill"] == {"dm": {"iterations": 7, "frames": True}, "gan_latent": {"steps": 3}}
    assert cfg["distill"] == {"dm": {"iterations": 7}}  # the shared options are not modified

    class Store:  # just what a cell asks of the store before building a distilled set
        split, labels, lengths = (lambda *a: [0, 1]), (lambda *a: np.array([0, 1])), (lambda *a: np.array([5, 5]))

    seen = {}

    def capture(source, *a, cfg=None, **kw):
        seen[source] = cfg
        raise RuntimeError("captured")

    monkeypatch.setattr("s3prl_dd.distill.make_training_set", capture)
    ctx = {"cfg": cfg, "generators": {}, "pools": {}}
    for ds in ("linear", "deep"):
        cell = {"fold": 1, "seed": 0, "downstream": ds, "arch": None, "variant": None, "source": "dm", "ppc": 1,
                "balance": "balanced", "gan_seed": None}
        with pytest.raises(RuntimeError, match="captured"):
            cells_mod.training_set(cell, ctx, Store(), pooled=ds == "linear")
        assert seen["dm"] == for_downstream(cfg, ds)["distill"]["dm"]
    with pytest.raises(UserError, match="per_downstream.deep"):
        load_pipeline_config(write_cfg(tmp_path, downstreams=["linear", "deep"], per_downstream={"deep": {"lr": 1}}))
    with pytest.raises(UserError, match="per_downstream.deep.distill"):
        load_pipeline_config(write_cfg(tmp_path, downstreams=["linear", "deep"],
                                       per_downstream={"deep": {"distill": {"dmm": {"frames": True}}}}))


def test_gan_truncation_is_a_distill_option_that_changes_the_cell_recipe(tmp_path):
    plain = load_pipeline_config(write_cfg(tmp_path))
    trunc = load_pipeline_config(write_cfg(tmp_path, distill={"gan": {"truncation": 0.5}}))
    cell = {"fold": 1, "seed": 0, "downstream": "linear", "arch": "gan_mlp", "variant": "baseline", "source": "gan",
            "ppc": 1, "balance": "balanced", "gan_seed": 0}
    # a rerun with another psi recomputes the GAN cells, and only them
    assert cells_mod.cell_recipe(cell, plain) != cells_mod.cell_recipe(cell, trunc)
    real = {**cell, "arch": None, "variant": None, "source": "random", "gan_seed": None}
    assert cells_mod.cell_recipe(real, plain) == cells_mod.cell_recipe(real, trunc)


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

    # a protocol change (the ER recipe) recomputes exactly the cells it touches; GANs are kept
    recomputed.clear()
    run_mod.run_pipeline(cfg_path, ["er.overrides='runner.total_steps=30,,runner.eval_step=10'"], out=out)
    assert sorted(recomputed) == sorted(cells_mod.cell_key(c) for c in enumerate_cells(load_pipeline_config(cfg_path)))
    assert generator.stat().st_mtime_ns == g_mtime
    recomputed.clear()
    run_mod.run_pipeline(cfg_path, ["er.overrides='runner.total_steps=30,,runner.eval_step=10'"], out=out, report=False)
    assert recomputed == []


def test_results_json_keeps_each_gans_dev_curve_so_convergence_needs_no_run_dir(tmp_path):
    import json

    from s3prl_dd.pipeline.report import _gans
    from s3prl_dd.runlog import RunLog

    cfg = load_pipeline_config(write_cfg(tmp_path))
    run_dir = tmp_path / "run" / "gans" / "gan_mlp-baseline-fold1-g0" / "00000-gan_mlp-baseline"
    run_dir.mkdir(parents=True)
    log = RunLog(run_dir)
    for step, uar in ((2, 0.4), (4, 0.7), (6, 0.6)):
        log(step, "train", {"critic/wasserstein": 1.0 / step})
        log(step, "eval", {"dev_uar": uar})
    log.close()
    (run_dir / "result.json").write_text(json.dumps({"step": 6, "best_step": 4, "best_dev_uar": 0.7,
                                                     "train_seconds": 1.0}))
    (g,) = _gans(tmp_path / "run", cfg)
    assert g["gan"] == "gan_mlp-baseline-fold1-g0" and g["dev_curve"] == [[2, 0.4], [4, 0.7], [6, 0.6]]


def test_privacy_stage_table4_and_probe_run(tmp_path, monkeypatch):
    """Table 4 from the run's own cells; a cell without its checkpoint is rerun to the same
    record; ``s3prl-dd probe --run`` recomputes it for new settings and rewrites the report."""
    import json
    import shutil

    from s3prl_dd.cli import main

    gan = {**TINY["gan"], "variants": ["baseline", "div_sml"]}
    cfg_path = write_cfg(tmp_path, gan=gan, pool={"overrides": "pool.seeds=[0],,pool.checkpoints_per_seed=2"},
                         probe={"enabled": True, "seeds": [0], "speaker": {"steps": 20}, "memo": {"n_per_class": 4}})
    out = run_mod.run_pipeline(cfg_path, out=tmp_path / "run")
    results = json.loads((out / "results.json").read_text())
    block = results["sid_probe"]
    assert [r["name"] for r in block["rows"]] == ["upstream", "real", "baseline", "proposed"]
    assert set(block["memorization"]) == {"baseline", "proposed"}
    assert "Table 4" in (out / "report.md").read_text()
    # the GAN rows' full-size cells are not in this grid: the stage ran them, with their models
    proposed = block["cells"]["proposed"]
    assert proposed == "fold1-seed0-linear-gan-gan_mlp-div_sml-g0-ppcfull-imbalanced"
    record = json.loads((out / "cells" / f"{proposed}.json").read_text())
    assert (out / "cells" / proposed / f"er-{record['best_step']}.pt").is_file()

    # a finished run with a finished probe is not re-staged on rerun
    def no_stages(*a):
        raise AssertionError("stages re-entered")

    monkeypatch.setattr(run_mod, "build_context", no_stages)
    run_mod.run_pipeline(cfg_path, out=tmp_path / "run")
    monkeypatch.undo()

    # a cell from before per-cell checkpoints: rerun, same record
    real_key = block["cells"]["real"]
    before = json.loads((out / "cells" / f"{real_key}.json").read_text())
    shutil.rmtree(out / "cells" / real_key)
    main(["probe", "--run", str(out), "--seeds", "0,1", "--steps", "10"])
    after = json.loads((out / "cells" / f"{real_key}.json").read_text())
    assert after["test_uar"] == before["test_uar"] and after["predictions"] == before["predictions"]
    block = json.loads((out / "results.json").read_text())["sid_probe"]
    assert block["seeds"] == [0, 1] and block["config"]["steps"] == 10
    with pytest.raises(SystemExit):
        main(["probe", "--run", str(out), "--store", "x"])


def test_vectors_become_typical_length_sequences_for_deep_models():
    import numpy as np

    from s3prl_dd.er.data import ERData
    from s3prl_dd.pipeline.cells import as_sequences

    means = np.arange(6, dtype=np.float32).reshape(3, 2)
    out = as_sequences(ERData(means, np.array([0, 1, 2])), length=5)
    assert [f.shape for f in out.features] == [(5, 2)] * 3
    assert np.allclose(out.pooled(), means)  # the time mean is what it was
    frames = [np.ones((7, 2), np.float32), np.zeros((1, 2), np.float32)]
    out = as_sequences(ERData(frames, np.array([0, 1])), length=4)
    assert [f.shape for f in out.features] == [(7, 2), (4, 2)]  # real-length items stay as they are


def test_plots_of_a_full_size_only_grid(tmp_path):
    """A grid with no numeric budget (Table 4 runs: budgets [full]) has no UAR-vs-budget axis:
    the report skips that figure instead of failing on an empty log-scaled axis."""
    pytest.importorskip("matplotlib")
    from s3prl_dd.pipeline.plots import write_plots

    cfg = load_pipeline_config(write_cfg(tmp_path, budgets=["full"], balance=["imbalanced"]))
    records = [{"source": "real", "downstream": "linear", "test_uar": 80.0, "fold": 1, "seed": 0}]
    md = "\n".join(write_plots(tmp_path, cfg, records))
    assert "uar_vs_budget" not in md and not list(tmp_path.glob("uar_vs_budget_*.png"))
    cfg = load_pipeline_config(write_cfg(tmp_path, budgets=[2, "full"], balance=["balanced"]))
    assert "uar_vs_budget_linear.png" in "\n".join(write_plots(tmp_path, cfg, records))


def test_plots_of_a_run_without_gans(tmp_path):
    """A real-data-only run (``gan.archs=[]``, e.g. one built for its store and real baselines)
    gets its UAR-vs-budget figure and no GAN figures, instead of an IndexError after every cell."""
    pytest.importorskip("matplotlib")
    from s3prl_dd.pipeline.plots import write_plots

    cfg = load_pipeline_config(write_cfg(tmp_path, budgets=[2], balance=["balanced"]),
                               "sources=['real','random'],,gan.archs=[],,gan.distill_archs=[]")
    records = [{"source": "real", "downstream": "linear", "test_uar": 80.0, "fold": 1, "seed": 0}]
    md = "\n".join(write_plots(tmp_path, cfg, records))
    assert "uar_vs_budget_linear.png" in md and "real vs generated" not in md and "GAN training" not in md


def test_report_prints_small_p_values_and_single_fold_differences_readably():
    from s3prl_dd import metrics
    from s3prl_dd.pipeline.report import _diff_fmt

    big = _diff_fmt(metrics.paired_test([90.0, 91.0, 92.5, 90.2, 91.1], [50.0, 50.5, 51.0, 49.0, 50.3]))
    assert big.endswith("p<0.001 *") and "p=0.000" not in big
    assert _diff_fmt(metrics.paired_test([60.0, 70.0, 65.0], [61.0, 66.0, 66.0])) == "+0.7 [-6.5, +7.8] p=0.728"
    assert _diff_fmt(metrics.paired_test([70.0], [60.0])) == "+10.0 (n=1, no test)"  # one fold: no crash


def test_a_probe_without_gans_is_a_clear_error():
    from s3prl_dd.pipeline.privacy import probe_settings
    from s3prl_dd.utils import UserError

    cfg = {"probe": {}, "folds": [1], "seeds": [0], "gan": {"archs": []}}
    with pytest.raises(UserError, match="gan.archs is empty"):  # not an IndexError from archs[0]
        probe_settings(cfg)


def test_paired_folds_pairs_a_row_on_the_seeds_it_shares_with_the_other():
    def cell(fold, seed, source, uar):
        return {"fold": fold, "seed": seed, "source": source, "test_uar": uar}
    recs = [cell(f, s, "gan", 60.0 + 10 * s) for f in (1, 2) for s in (0, 1)]
    recs += [cell(f, 0, "baseline", 50.0) for f in (1, 2)] + [cell(3, 0, "gan", 1.0)]
    folds, va, vb = paired_folds(recs, {"source": "gan"}, {"source": "baseline"})
    assert (folds, va, vb) == ([1, 2], [60.0, 60.0], [50.0, 50.0])  # seed 0's 60, not mean(60, 70)
