"""One set of one result JSON against a set of another, paired over folds; nothing is rerun.

    python benchmarks/compare_sets.py NEW.json:SET OLD.json:SET [--out JSON]
    python benchmarks/compare_sets.py A.json:SET+B.json:SET OLD.json:SET      # the mean of A's and B's

E.g. the same config trained for 4000 and for 2000 steps, each tested by its own
``config_choice.py`` run: ``gan_att_long4k_test.json:alt_mean gan_att_long_seeds.json:alt_mean``.
A pipeline run's ``results.json`` is read too: its sets are the sources (``real``, ``random``,
``herding``, ``dm``) and, for the cells of a generator, ``ARCH-VARIANT`` (``gan_att-div_sml``) or
``SOURCE-ARCH-VARIANT`` (``gan_latent-gan_att-div_sml``); ``--downstream`` picks its linear or
DeepModel cells. E.g. two runs' GANs: ``results/emodb_gan_cnn/results.json:gan_cnn-div_sml
results/emodb/results.json:gan_att-div_sml --seeds 0`` (``--seeds``: only these downstream seeds,
on both sides; the default, every seed a JSON has).
Per budget the mean Δ (NEW − OLD), its 95 % t-interval and the paired t p over folds, a fold's
value being the mean over its downstream seeds (the fold is the unit, as in the JSONs' own tables).
A side of several ``PATH:SET`` joined by ``+`` (e.g. two GAN seeds, each tested by its own run) is
their mean per fold, so the generators' variance stays inside the fold's value. A part may name
its own downstream seeds, ``PATH:SET@0,1``, so that seeds spread unevenly over runs weigh equally:
``A.json:gan_mlp-div_sml@0+A.json:gan_mlp-div_sml@1+B.json:gan_mlp-div_sml@2`` is the mean of three
seeds, two from run A and one from run B.

The pairing is only honest if all JSONs tested the same folds on the same test utterances with
the same downstream model: folds, downstream and every fold's test labels (from the full-real
records) must agree, or it stops with an error.
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

from lambda_sweep_test import fold_means  # noqa: E402  (full real data pairs with any budget)
from s3prl_dd import metrics  # noqa: E402
from s3prl_dd.errors import run_main  # noqa: E402
from s3prl_dd.utils import UserError, atomic_write_json, default  # noqa: E402


def parse_spec(spec: str) -> tuple[Path, str, set[int] | None]:
    """``PATH:SET`` or ``PATH:SET@SEEDS`` (comma-separated downstream seeds; None: not given)."""
    path, sep, name = spec.rpartition(":")
    name, at, seeds = name.partition("@")
    if not sep or not path or not name or (at and not seeds):
        raise UserError(f"{spec!r}: give a result JSON and a set name as PATH:SET or PATH:SET@SEEDS, e.g. out.json:alt_mean")
    if not Path(path).is_file():
        raise UserError(f"no result JSON at {path}")
    return Path(path), name, parse_seeds(seeds) if at else None


def parse_seeds(text: str) -> set[int]:
    try:
        return {int(s) for s in text.split(",")}
    except ValueError:
        raise UserError(f"seeds {text!r}: give comma-separated integers, e.g. 0,1") from None


def test_labels(result: dict) -> dict[int, str]:
    """Each fold's test labels, read from its full-real records (the same for every seed)."""
    return {r["fold"]: r["test_labels"] for r in result["records"] if r.get("set") == "real" and "test_labels" in r}


def pipeline_set(record: dict) -> str:
    """A pipeline cell's set: its source, or its generator (and source, where not plain sampling)."""
    if record.get("arch") is None:
        return record["source"]
    gan = f"{record['arch']}-{record['variant']}"
    return gan if record["source"] == "gan" else f"{record['source']}-{gan}"


def from_pipeline(result: dict, downstream: str) -> dict:
    """A pipeline run's results.json as a test-result JSON of one downstream: full real data and
    the balanced budgets (Table 3's imbalanced sets are another question)."""
    records = [{**r, "set": pipeline_set(r)} for r in result["records"]
               if r["downstream"] == downstream and (r["balance"] == "balanced" or r["source"] == "real")]
    budgets = sorted({r["ppc"] for r in records if isinstance(r["ppc"], int)})
    return {"downstream": downstream, "folds": result["config"]["folds"], "budgets": budgets, "records": records}


def load(path: Path, name: str, downstream: str = "linear", seeds=None) -> dict:
    result = json.loads(path.read_text())
    if isinstance(result, dict) and {"records", "config"} <= set(result) and "folds" not in result:
        result = from_pipeline(result, downstream)
    if isinstance(result, dict) and seeds is not None and "records" in result:
        result = {**result, "records": [r for r in result["records"] if r.get("seed") in seeds]}
        if not any(r.get("set") == name for r in result["records"]):
            raise UserError(f"{path}: set {name!r} has no cells of downstream seed(s) {sorted(seeds)}")
    if not isinstance(result, dict) or not {"records", "folds", "budgets"} <= set(result):
        raise UserError(f"{path}: not a test-result JSON (config_choice.py, truncation.py, lambda_sweep_test.py) "
                        "or a pipeline run's results.json")
    sets = sorted({r["set"] for r in result["records"] if "set" in r})
    if name not in sets:
        raise UserError(f"{path} has no set {name!r}; its sets: {', '.join(sets)}")
    return result


def load_side(specs: str, downstream: str = "linear", seeds=None) -> list[tuple[dict, str]]:
    """A side ``PATH:SET[@SEEDS]+...`` as (result, set) parts; ``seeds`` is the default for parts naming none."""
    parts = [parse_spec(s) for s in specs.split("+")]
    return [(load(path, name, downstream, default(own, seeds)), name) for path, name, own in parts]


def check_pairable(a: dict, b: dict, names: tuple[str, str]) -> None:
    if a.get("downstream", "linear") != b.get("downstream", "linear"):
        raise UserError(f"{names[0]} tests with {a.get('downstream')}, {names[1]} with {b.get('downstream')}")
    if sorted(a["folds"]) != sorted(b["folds"]):
        raise UserError(f"folds differ: {a['folds']} vs {b['folds']}")
    la, lb = test_labels(a), test_labels(b)
    if not la or la != lb:
        raise UserError("the two JSONs were not tested on the same test utterances (their full-real records' "
                        "test labels differ or are missing): a paired test would mix test sets")


def check_sides(new: list, old: list, specs: list[str]) -> None:
    """Every part of both sides against the first: the same folds, downstream and test utterances."""
    loaded = new + old
    for spec, (result, _) in zip(specs[1:], loaded[1:]):
        check_pairable(loaded[0][0], result, (specs[0], spec))


def compare_specs(new: str, old: str, downstream: str = "linear", seeds=None) -> tuple[list[int], dict]:
    """NEW − OLD, each ``PATH:SET[@SEEDS]+...``, checked pairable: (the folds, the comparison per budget)."""
    a, b = load_side(new, downstream, seeds), load_side(old, downstream, seeds)
    check_sides(a, b, new.split("+") + old.split("+"))
    return a[0][0]["folds"], compare(a, b)


def side_values(side: list[tuple[dict, str]], ppc: int, folds: list[int]) -> dict[int, float]:
    """A side's value per fold at one budget: the mean over its (JSON, set) parts."""
    parts = [fold_means(result["records"], name, ppc) for result, name in side]
    for (_, name), v in zip(side, parts):
        if sorted(v) != sorted(folds):
            raise UserError(f"{ppc} ppc: {name} has folds {sorted(v)}; every fold of {folds} is needed")
    return {f: statistics.fmean(v[f] for v in parts) for f in folds}


def compare(side_a: list[tuple[dict, str]], side_b: list[tuple[dict, str]]) -> dict:
    results = [r for r, _ in side_a + side_b]
    budgets = [x for x in results[0]["budgets"] if all(x in r["budgets"] for r in results)]
    folds, out = sorted(results[0]["folds"]), {}
    for ppc in budgets:
        va, vb = side_values(side_a, ppc, folds), side_values(side_b, ppc, folds)
        xa, xb = [va[f] for f in folds], [vb[f] for f in folds]
        out[str(ppc)] = {"new": metrics.summarize(xa), "old": metrics.summarize(xb),
                         "paired": metrics.paired_test(xa, xb), "per_fold": {str(f): [va[f], vb[f]] for f in folds}}
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("new", help="PATH:SET[@SEEDS] (or several joined by +: their mean), e.g. out.json:alt_mean")
    p.add_argument("old", help="PATH:SET it is compared against")
    p.add_argument("--downstream", choices=("linear", "deep"), default="linear",
                   help="the cells of a pipeline results.json to read (other JSONs hold one downstream)")
    p.add_argument("--seeds", help="only these downstream seeds, comma-separated (default: every seed)")
    p.add_argument("--out", help="write the comparison here (JSON)")
    a = p.parse_args(argv)
    seeds = parse_seeds(a.seeds) if a.seeds else None
    folds, by_budget = compare_specs(a.new, a.old, a.downstream, seeds)
    print(f"{a.new} − {a.old} (n = {len(folds)} folds, paired t)")
    for ppc, c in by_budget.items():
        t = c["paired"]
        print(f"{ppc:>3} ppc: {c['new']['mean']:.1f} ± {c['new']['std']:.1f} vs {c['old']['mean']:.1f} ± "
              f"{c['old']['std']:.1f}: {t['mean_diff']:+.1f} [{t['ci_low']:+.1f}, {t['ci_high']:+.1f}] p={t['t_p']:.2g}")
    if a.out:
        atomic_write_json({"new": a.new, "old": a.old, "folds": folds,
                           **({"seeds": sorted(seeds)} if seeds else {}), "by_budget": by_budget},
                          Path(a.out))
    return 0


if __name__ == "__main__":
    run_main(main)
