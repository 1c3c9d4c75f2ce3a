"""One arch's GANs over every GAN seed that several pipeline runs hold, and how much the generator
seed moves the result.

    python benchmarks/gan_seeds.py results/emodb/results.json results/emodb_seed2/results.json \
        --arch gan_mlp [--downstream linear] [--budgets 1,20] [--out benchmarks/results/gan_seeds_emodb.json]

The runs are parts of one grid (same corpus, upstream, GAN config, pool and ER recipe; other
downstream seeds / GAN seeds): the records are pooled, a cell present in two runs must have
identical test predictions (otherwise the runs are not parts of one grid and the script stops),
and the fold stays the unit. Per budget and variant it prints

- the fold table (each fold the mean over its GAN seeds, downstream seed i on GAN seed i) and the
  paired-over-folds tests of the issue: variant - random, + L_DIV + L_SML - Baseline, real -
  variant, each on the downstream seeds both of its rows hold (random and real have every seed the
  GAN rows have; a variant run at fewer GAN seeds is compared with the other on its own seeds only);
- the spread between generators: per fold, the std over GAN seeds of a cell's test UAR, averaged
  over folds, next to the same spread of random real subsets over downstream seeds (a new seed
  there draws a new subset). A GAN cell's seed changes both the generator and the downstream
  run, so the GAN spread is an upper bound on what the generator alone contributes.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from s3prl_dd import metrics  # noqa: E402
from s3prl_dd.errors import run_main  # noqa: E402
from s3prl_dd.pipeline.records import match, paired_folds, per_fold, shared_seeds  # noqa: E402
from same_cells import KEY, by_key  # noqa: E402  (what makes two runs' cells the same cell)

VARIANTS = ("baseline", "div_sml")


def pooled(paths: list[Path]) -> list[dict]:
    """Every distinct cell of the runs; a cell in two runs must agree to the prediction."""
    seen: dict[tuple, dict] = {}
    for path in paths:
        for k, r in by_key(path).items():
            if k in seen and seen[k]["predictions"] != r["predictions"]:
                raise SystemExit(f"error: {path} and an earlier run disagree on cell {dict(zip(KEY, k))}: "
                                 "not parts of one grid")
            seen[k] = r
    return list(seen.values())


def seed_spread(records: list[dict], by: str, **sel) -> dict:
    """Mean over folds of the std over ``by`` (GAN or downstream seed) of the matching cells' test UAR."""
    per: dict[int, list[float]] = {}
    for r in records:
        if match(r, **sel):
            per.setdefault(r["fold"], []).append(r["test_uar"])
    stds = [statistics.stdev(v) for v in per.values() if len(v) > 1]
    return {"mean_std_over_seeds": statistics.fmean(stds) if stds else None,
            "seeds_per_fold": sorted({len(v) for v in per.values()}), "folds": len(stds), "by": by}


def test(records, a: dict, b: dict) -> dict:
    folds, va, vb = paired_folds(records, a, b)
    return {"folds": folds, "seeds": shared_seeds(records, a, b), "a_fold_uar": va, "b_fold_uar": vb,
            **metrics.paired_test(va, vb)}


def analyse(records: list[dict], arch: str, downstream: str, budgets=None) -> dict:
    gan = [r for r in records if match(r, source="gan", arch=arch, downstream=downstream)]
    if not gan:
        raise SystemExit(f"error: no {downstream} cells of {arch} in these runs")
    seeds = sorted({r["seed"] for r in gan})  # the GAN rows' downstream seeds, used for every row
    records = [r for r in records if r["downstream"] == downstream and r["seed"] in seeds]
    budgets = sorted({r["ppc"] for r in gan if r["balance"] == "balanced" and isinstance(r["ppc"], int)
                      and (budgets is None or r["ppc"] in budgets)})
    variants = [v for v in VARIANTS if any(r["variant"] == v for r in gan)]
    real = {"source": "real", "ppc": "full", "balance": "imbalanced"}  # the report's full real data
    out = {"arch": arch, "downstream": downstream, "downstream_seeds": seeds,
           "gan_seeds": sorted({r["gan_seed"] for r in gan}), "variants": variants,
           "real": metrics.summarize(list(per_fold(records, **real).values())), "by_budget": {}}
    for b in budgets:
        rnd = {"source": "random", "ppc": b, "balance": "balanced"}
        sel = {v: {"source": "gan", "arch": arch, "variant": v, "ppc": b, "balance": "balanced"} for v in variants}
        row = {"random": metrics.summarize(list(per_fold(records, **rnd).values())),
               "spread": {"random": seed_spread(records, "downstream seed", **rnd)}}
        for v in variants:
            row[v] = metrics.summarize(list(per_fold(records, **sel[v]).values()))
            row["spread"][v] = seed_spread(records, "GAN seed", **sel[v])
        row["paired"] = {f"{v} - random": test(records, sel[v], rnd) for v in variants}
        if len(variants) == 2:
            row["paired"]["div_sml - baseline"] = test(records, sel["div_sml"], sel["baseline"])
        row["paired"][f"real - {variants[-1]}"] = test(records, real, sel[variants[-1]])
        out["by_budget"][str(b)] = row
    return out


def _spread(s: dict) -> str:
    return "" if s["mean_std_over_seeds"] is None else f" (spread {s['mean_std_over_seeds']:.1f})"


def _p(t: dict) -> str:
    return f"{t['mean_diff']:+.1f} p=" + (f"{t['t_p']:.3f}" if t["t_p"] is not None else "-")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("results", type=Path, nargs="+", help="results.json of pipeline runs of one grid")
    p.add_argument("--arch", default="gan_mlp")
    p.add_argument("--downstream", default="linear")
    p.add_argument("--budgets", help="comma-separated ppc (default: every budget of the GAN rows)")
    p.add_argument("--out", type=Path)
    a = p.parse_args(argv)
    budgets = [int(b) for b in a.budgets.split(",")] if a.budgets else None
    res = {"runs": [str(x) for x in a.results], **analyse(pooled(a.results), a.arch, a.downstream, budgets)}
    print(f"{a.arch}, {a.downstream}: GAN seeds {res['gan_seeds']} (downstream seed i on GAN seed i), "
          f"mean ± std over folds of the fold means; spread = mean over folds of the std over seeds")
    print(f"full real data: {res['real']['mean']:.1f} ± {res['real']['std']:.1f}")
    for b, row in res["by_budget"].items():
        cells = "  ".join(f"{n} {row[n]['mean']:.1f} ± {row[n]['std']:.1f}{_spread(row['spread'][n])}"
                          for n in ["random"] + res["variants"])
        tests = "; ".join(f"{k} {_p(t)}" + (f" (seeds {t['seeds']})" if t["seeds"] != res["downstream_seeds"] else "")
                          for k, t in row["paired"].items())
        print(f"{b:>3} ppc: {cells}\n         {tests}")
    if a.out:
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(json.dumps(res, indent=2) + "\n")
        print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    run_main(main)
