"""The GAN issue's four acceptance targets, for every configuration a YAML lists, computed from
committed result JSONs (nothing is rerun, no number is typed in):

    python benchmarks/gan_targets.py benchmarks/gan_targets_emodb.yaml [--out JSON]

Each row names a configuration's set and the sets it is compared with, as ``compare_sets.py``
specs (``PATH:SET``; parts joined by ``+`` are averaged per fold; ``@SEEDS`` picks a part's
downstream seeds): ``set``, ``random``, ``real`` and, where one was trained, ``baseline``; and
its ``downstream`` (linear or deep). Every comparison is paired over folds (the fold is the unit)
and refused unless both sides were tested on the same test utterances. The targets, as the issue
words them (paired over folds, n = the folds):

  1. ≥ a random real subset at every budget   set − random ≥ 0 at 1, 2, 5, 10 and 20 ppc
  2. ≥ +3 UAR over random at 1, 2 and 5 ppc     set − random ≥ 3 at each
  3. within 3 UAR of full real data at 20 ppc   real − set ≤ 3 at 20 ppc
  4. above its Baseline at ≥ 3 of 5 budgets     set − baseline > 0 with paired t p < 0.05

Targets 1-3 read the point estimate (the mean difference over folds), as the issue does; the
printed table shows it with its p, so a pass by a hair is visible as one.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import compare_sets  # noqa: E402
from s3prl_dd.errors import run_main  # noqa: E402
from s3prl_dd.utils import UserError, atomic_write_json, exists  # noqa: E402

BUDGETS = ("1", "2", "5", "10", "20")
SMALL_BUDGETS = ("1", "2", "5")
MARGIN, REAL_GAP, ALPHA, MIN_BUDGETS_ABOVE_BASELINE = 3.0, 3.0, 0.05, 3
TARGETS = ("≥ random at every budget", "≥ +3 over random at 1, 2, 5 ppc",
           "within 3 of full real data at 20 ppc", "above its Baseline (p < 0.05) at ≥ 3 of 5 budgets")


def paired(new: str, old: str, downstream: str) -> dict[str, dict]:
    """NEW − OLD per budget (compare_sets.py's paired test over folds)."""
    _, comparison = compare_sets.compare_specs(new, old, downstream)
    by_budget = {ppc: c["paired"] for ppc, c in comparison.items()}
    missing = [x for x in BUDGETS if x not in by_budget]
    if missing:
        raise UserError(f"{new} − {old}: no cells at {', '.join(missing)} ppc; the targets need every budget")
    return by_budget


def marks(vs_random: dict, real_gap: dict, vs_baseline: dict | None) -> list[bool | None]:
    """The four targets met (True), missed (False) or not assessable (None: no Baseline)."""
    above_baseline = None
    if exists(vs_baseline):
        above_baseline = sum(d["mean_diff"] > 0 and d["t_p"] < ALPHA for d in vs_baseline.values())
    return [all(vs_random[b]["mean_diff"] >= 0 for b in BUDGETS),
            all(vs_random[b]["mean_diff"] >= MARGIN for b in SMALL_BUDGETS),
            real_gap["20"]["mean_diff"] <= REAL_GAP,
            None if above_baseline is None else above_baseline >= MIN_BUDGETS_ABOVE_BASELINE]


def assess(row: dict) -> dict:
    for key in ("name", "set", "random", "real"):
        if not row.get(key):
            raise UserError(f"row {row.get('name', row)!r}: '{key}' is required")
    downstream = row.get("downstream", "linear")
    vs_random = paired(row["set"], row["random"], downstream)
    real_gap = paired(row["real"], row["set"], downstream)
    vs_baseline = paired(row["set"], row["baseline"], downstream) if row.get("baseline") else None
    return {**row, "downstream": downstream, "vs_random": vs_random, "real_gap": real_gap,
            "vs_baseline": vs_baseline, "targets": dict(zip(TARGETS, marks(vs_random, real_gap, vs_baseline)))}


def signed(x: float) -> str:
    return f"{x:+.1f}".replace("-", "−")


def _diffs(by_budget: dict) -> str:
    return " / ".join(signed(by_budget[b]["mean_diff"]) + ("*" if by_budget[b]["t_p"] < ALPHA else "") for b in BUDGETS)


def table(rows: list[dict]) -> str:
    head = ("| configuration | downstream | − random, 1 / 2 / 5 / 10 / 20 ppc | full real − it, 20 ppc "
            "| − its Baseline, 1 / 2 / 5 / 10 / 20 ppc | targets 1 2 3 4 | met |")
    lines = [head, "|" + "---|" * 7]
    for r in rows:
        gap = r["real_gap"]["20"]
        base = _diffs(r["vs_baseline"]) if r["vs_baseline"] else "no Baseline"
        ticks = " ".join({True: "✓", False: "✗", None: "–"}[m] for m in r["targets"].values())
        met = sum(m is True for m in r["targets"].values())
        lines.append(f"| {r['name']} | {r['downstream']} | {_diffs(r['vs_random'])} | {signed(gap['mean_diff'])} "
                     f"(p={gap['t_p']:.2g}) | {base} | {ticks} | {met} of {sum(m is not None for m in r['targets'].values())} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("rows", help="a YAML with a list 'rows' (name, set, random, real, baseline, downstream, note)")
    p.add_argument("--out", help="write every comparison and mark here (JSON)")
    a = p.parse_args(argv)
    path = Path(a.rows)
    if not path.is_file():
        raise UserError(f"no rows YAML at {path}")
    rows = (yaml.safe_load(path.read_text()) or {}).get("rows")
    if not rows:
        raise UserError(f"{path}: no 'rows' list")
    assessed = [assess(r) for r in rows]
    print(table(assessed))
    notes = [f"- {r['name']} ({r['downstream']}): {r['note']}" for r in assessed if r.get("note")]
    if notes:   # the caveats a mark needs (an unconverged Baseline) travel with the table
        print("\nNotes:\n" + "\n".join(notes))
    print("\n* paired t p < 0.05 over folds. Targets: " + "; ".join(f"{i} {t}" for i, t in enumerate(TARGETS, 1)))
    if a.out:
        atomic_write_json({"rows_yaml": str(path), "targets": list(TARGETS), "rows": assessed}, Path(a.out))
    return 0


if __name__ == "__main__":
    run_main(main)
