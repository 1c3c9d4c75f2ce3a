"""Did each GAN converge? Read from the quick-eval dev curves (``dev_curve``) that a
lambda_sweep.py JSON keeps, or that a pipeline run's results.json keeps per GAN (``RESULTS:PREFIX``:
the GANs named PREFIX-fold*, e.g. ``results/x/results.json:gan_att-baseline``); nothing is
retrained, test is never read.

    python benchmarks/gan_convergence.py SWEEP|RESULTS:PREFIX [...] [--edge 0.1] [--out JSON]

Per run: the best step and where it falls in the run (``at_edge``: in the last ``--edge``
fraction of the steps, so the run may have stopped while still improving); the last evaluation
against the one at three quarters of the run (``late_rise``: a curve still climbing rises
there); and the mean of the last quarter's evaluations against the quarter before
(``quarter_rise``: the same question, less swayed by one evaluation's luck). Per sweep, the
counts and means over its runs. Two sweeps of one config at different lengths answer the next
question: did the longer run end higher (``best_dev_uar``), or only peak at its own end again?
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from s3prl_dd.utils import UserError, atomic_write_json  # noqa: E402
from s3prl_dd.errors import run_main  # noqa: E402


def dev_at(curve: list, step: float) -> float:
    """The evaluation at the last logged step <= ``step`` (the first one when none is)."""
    before = [uar for s, uar in curve if s <= step]
    return before[-1] if before else curve[0][1]


def _mean_between(curve: list, lo: float, hi: float) -> float:
    vals = [uar for s, uar in curve if lo < s <= hi]
    return statistics.fmean(vals) if vals else float("nan")


def run_convergence(run: dict, edge: float) -> dict:
    curve, steps = run.get("dev_curve"), run["steps"]
    if not curve:
        raise UserError(f"{run.get('run_dir')}: no dev_curve (rerun lambda_sweep.py, or the pipeline on its run "
                        "directory: both add them)")
    best_step, best = max(curve, key=lambda p: (p[1], -p[0]))   # ties: the earlier step
    last = curve[-1][1]
    return {"fold": run["fold"], "run_dir": run.get("run_dir"), "steps": steps,
            "best_step": best_step, "best_dev_uar": best, "last_dev_uar": last,
            "at_edge": best_step > (1 - edge) * steps,
            "late_rise": last - dev_at(curve, 0.75 * steps),
            "quarter_rise": _mean_between(curve, 0.75 * steps, steps) - _mean_between(curve, 0.5 * steps, 0.75 * steps)}


def sweep_convergence(sweep: dict, edge: float) -> dict:
    runs = [run_convergence(r, edge) for r in sweep["runs"]]
    return {"runs": runs, "n": len(runs), "at_edge": sum(r["at_edge"] for r in runs),
            "late_rise_positive": sum(r["late_rise"] > 0 for r in runs),
            "mean_late_rise": statistics.fmean(r["late_rise"] for r in runs),
            "mean_quarter_rise": statistics.fmean(r["quarter_rise"] for r in runs),
            "mean_best_dev_uar": statistics.fmean(r["best_dev_uar"] for r in runs)}


def load_runs(arg: str) -> dict:
    """A sweep JSON as it is, or a pipeline results.json's GANs named PREFIX-fold* as a sweep's runs."""
    path, _, prefix = arg.partition(":")
    if not Path(path).is_file():
        raise UserError(f"no sweep or results JSON at {path}")
    data = json.loads(Path(path).read_text())
    if not prefix:
        return data
    gans = [g for g in data.get("gans", []) if g["gan"].startswith(f"{prefix}-fold")]
    if not gans:
        raise UserError(f"{path}: no GAN named {prefix}-fold* among its gans")
    return {"runs": [{"fold": g["gan"][len(prefix) + 1:], "run_dir": g["gan"], "steps": g["steps"],
                      "dev_curve": g.get("dev_curve")} for g in gans]}


def print_sweep(name: str, s: dict) -> None:
    print(f"\n{name}")
    w = max(4, *(len(str(r["fold"])) for r in s["runs"]))
    print(f"{'fold':>{w}}  steps  best step  best dev  last dev  late rise  quarter rise")
    for r in s["runs"]:
        print(f"{str(r['fold']):>{w}}  {r['steps']:>5}  {r['best_step']:>9}{'*' if r['at_edge'] else ' '} "
              f"{100 * r['best_dev_uar']:8.1f}  {100 * r['last_dev_uar']:8.1f}  {100 * r['late_rise']:+9.1f}  "
              f"{100 * r['quarter_rise']:+12.1f}")
    print(f"best step at the run's edge (*): {s['at_edge']} of {s['n']}; last eval above the one at 3/4 of the run: "
          f"{s['late_rise_positive']} of {s['n']} (mean {100 * s['mean_late_rise']:+.1f}); last quarter − the one "
          f"before: {100 * s['mean_quarter_rise']:+.1f}; mean best dev {100 * s['mean_best_dev_uar']:.1f}")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("sweeps", nargs="+", help="lambda_sweep.py JSONs or RESULTS.json:PREFIX")
    p.add_argument("--edge", type=float, default=0.1, help="the run's last fraction where a best step counts as at its edge")
    p.add_argument("--out", help="write the figures here (JSON)")
    a = p.parse_args(argv)
    if not 0 < a.edge < 1:
        p.error("--edge must lie in (0, 1)")
    result = {}
    for path in a.sweeps:
        result[path] = sweep_convergence(load_runs(path), a.edge)
        print_sweep(path, result[path])
    if a.out:
        atomic_write_json({"edge": a.edge, "sweeps": result}, Path(a.out))
    return 0


if __name__ == "__main__":
    run_main(main)
