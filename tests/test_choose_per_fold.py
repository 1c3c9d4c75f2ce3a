"""benchmarks/choose_per_fold.py: per (fold, variant, GAN seed), the generator the fold's own dev
split prefers among runs with different GAN settings, read from committed results only."""
import json

import pytest

from benchmark_scripts import load_benchmark
from s3prl_dd.utils import UserError

choose_per_fold, compare_sets = (load_benchmark(n) for n in ("choose_per_fold", "compare_sets"))


def cell(fold, seed, source, ppc, uar, variant=None, predictions="0123"):
    return {"fold": fold, "seed": seed, "downstream": "linear", "source": source, "ppc": ppc,
            "arch": "gan_mlp" if variant else None, "variant": variant, "gan_seed": seed if variant else None,
            "balance": "imbalanced" if ppc == "full" else "balanced", "recipe": "r", "test_uar": uar,
            "predictions": predictions, "test_labels": "0123"}


def run(seeds, dev, gan_uar, real_predictions="0123"):
    """A run of 2 folds: real, random and both GAN-MLP variants at 1 ppc; dev(fold, variant, seed)."""
    records, gans = [], []
    for f in (1, 2):
        for s in seeds:
            records += [cell(f, s, "real", "full", 80.0, predictions=real_predictions), cell(f, s, "random", 1, 50.0)]
            for v in ("baseline", "div_sml"):
                records.append(cell(f, s, "gan", 1, gan_uar, v))
                gans.append({"gan": f"gan_mlp-{v}-fold{f}-g{s}", "best_dev_uar": dev(f, v, s), "best_step": 5, "steps": 10})
    return {"records": records, "gans": gans, "config": {"folds": [1, 2], "seeds": list(seeds), "gan": {"overrides": {}}}}


def write(tmp_path, stem, data):
    path = tmp_path / f"{stem}.json"
    path.write_text(json.dumps(data))
    return str(path)


def test_each_gan_comes_from_the_candidate_its_dev_prefers_and_ties_go_to_the_first(tmp_path):
    a = write(tmp_path, "a", run([0], lambda f, v, s: 0.8, gan_uar=60.0))
    a2 = write(tmp_path, "a2", run([1], lambda f, v, s: 0.8, gan_uar=61.0))   # seed 1 of setting a: another run
    b = write(tmp_path, "b", run([0, 1], lambda f, v, s: 0.9 if (f, v) == (2, "div_sml") else 0.8, gan_uar=70.0))
    out = tmp_path / "chosen" / "results.json"
    assert choose_per_fold.main(["--arch", "gan_mlp", "--candidate", f"a={a}+{a2}", "--candidate", f"b={b}",
                                 "--out", str(out)]) == 0
    got = json.loads(out.read_text())
    picked = {g: c["chosen"] for g, c in got["choice"].items()}
    assert picked["gan_mlp-div_sml-fold2-g0"] == picked["gan_mlp-div_sml-fold2-g1"] == "b"
    assert [k for k, v in picked.items() if v == "b"] == ["gan_mlp-div_sml-fold2-g0", "gan_mlp-div_sml-fold2-g1"]
    gan = {(r["fold"], r["variant"], r["seed"]): (r["test_uar"], r["candidate"]) for r in got["records"] if r["arch"]}
    assert gan[(2, "div_sml", 1)] == (70.0, "b") and gan[(1, "div_sml", 1)] == (61.0, "a")
    assert len(gan) == 8 and sum(r["source"] == "real" for r in got["records"]) == 4
    assert got["identical_shared_cells"] == 8
    # it reads as a pipeline run: fold 2's proposed set is b's, fold 1's a's
    cmp_out = tmp_path / "cmp.json"
    assert compare_sets.main([f"{out}:gan_mlp-div_sml", f"{out}:random", "--out", str(cmp_out)]) == 0
    assert json.loads(cmp_out.read_text())["by_budget"]["1"]["per_fold"] == {"1": [60.5, 50.0], "2": [70.0, 50.0]}


def test_candidates_scored_another_way_or_without_gan_summaries_are_refused(tmp_path):
    a = write(tmp_path, "a", run([0], lambda *_: 0.8, gan_uar=60.0))
    other = write(tmp_path, "o", run([0], lambda *_: 0.8, gan_uar=60.0, real_predictions="3210"))
    with pytest.raises(UserError, match="not scored the same way"):
        choose_per_fold.main(["--arch", "gan_mlp", "--candidate", f"a={a}", "--candidate", f"o={other}",
                              "--out", str(tmp_path / "x.json")])
    bare = run([0], lambda *_: 0.8, gan_uar=60.0)
    bare["gans"] = []
    with pytest.raises(UserError, match="lists no GANs"):
        choose_per_fold.main(["--arch", "gan_mlp", "--candidate", f"a={a}",
                              "--candidate", f"b={write(tmp_path, 'b', bare)}", "--out", str(tmp_path / "x.json")])
    with pytest.raises(UserError, match="two or more"):
        choose_per_fold.main(["--arch", "gan_mlp", "--candidate", f"a={a}", "--out", str(tmp_path / "x.json")])
