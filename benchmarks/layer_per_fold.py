"""The upstream layer each EmoDB fold picks on its OWN dev split, from the runs that
``pretrained_real.py`` already made (nothing is rerun):

    python benchmarks/layer_per_fold.py benchmarks/results/pretrained_real.json \\
        --also benchmarks/results/featurizer_real.json --out benchmarks/results/layer_per_fold.json

The grid's one layer (GE2E layer 2) is the best mean dev UAR over all folds, a mean that pools
every fold's dev split, and another fold's dev split holds this fold's test speakers (issue 12's
rule). Here each fold's choice is its own dev UAR, mean over that fold's seeds, among the
candidates the pipeline's ``layer`` key can take: a hidden-state index of an upstream. Learned
Featurizer sums (``--also``) are reported beside the choice, not chosen: the pipeline would need
a runner run per fold first. Test UAR is not read.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from s3prl_dd.errors import run_main  # noqa: E402
from s3prl_dd.utils import UserError, atomic_write_json  # noqa: E402


def dev_per_fold(rows: list[dict], label) -> dict[int, dict[str, float]]:
    """fold -> candidate name -> mean dev UAR (%) over the fold's seeds."""
    out: dict[int, dict[str, float]] = {}
    for row in rows:
        if "runs" not in row:
            raise UserError(f"{row.get('upstream')}: no per-run results ('runs') to choose per fold from")
        per: dict[int, list] = {}
        for run in row["runs"]:
            per.setdefault(int(run["fold"]), []).append(100 * run["dev_uar"])
        for fold, values in per.items():
            out.setdefault(fold, {})[label(row)] = statistics.fmean(values)
    return out


def choose(candidates: dict[str, float]) -> str:
    """The highest dev UAR; a tie goes to the name that sorts first, so the choice is reproducible."""
    best = max(candidates.values())
    return sorted(n for n, v in candidates.items() if v == best)[0]


def read_rows(path) -> list[dict]:
    """The per-upstream rows ('layers') of a pretrained_real.py / featurizer_real.py JSON."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"no JSON at {path}")
    rows = json.loads(path.read_text()).get("layers")
    if not rows:
        raise UserError(f"{path}: no 'layers' rows (a pretrained_real.py or featurizer_real.py JSON)")
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("pretrained", help="pretrained_real.py's JSON (its 'layers' rows, runs per fold and seed)")
    p.add_argument("--also", help="featurizer_real.py's JSON: learned sums, reported beside the choice")
    p.add_argument("--out", help="write the choices here (JSON)")
    a = p.parse_args(argv)
    hidden = dev_per_fold(read_rows(a.pretrained), lambda r: f"{r['upstream']}:{r['layer']}")
    learned = dev_per_fold(read_rows(a.also), lambda r: f"{r['upstream']}:featurizer") if a.also else {}
    folds = {}
    for fold in sorted(hidden):
        pick = choose(hidden[fold])
        ranked = sorted(hidden[fold].items(), key=lambda kv: -kv[1])
        best_learned = max(learned.get(fold, {}).items(), key=lambda kv: kv[1], default=None)
        upstream, layer = pick.split(":")
        folds[str(fold)] = {"upstream": upstream, "layer": int(layer), "dev_uar": hidden[fold][pick],
                            "runner_up": dict(ranked[1:3]), "best_featurizer": dict([best_learned]) if best_learned else {}}
        note = ""
        if best_learned and best_learned[1] >= hidden[fold][pick]:
            note = f"  ({best_learned[0]} {best_learned[1]:.2f} would tie or beat it; not a pipeline candidate)"
        runner = ", ".join(f"{n} {v:.2f}" for n, v in ranked[1:3])
        print(f"fold {fold}: {pick} dev UAR {hidden[fold][pick]:.2f} (next: {runner}){note}")
    if a.out:
        atomic_write_json({"source": a.pretrained, "also": a.also, "rule": "max own-fold dev UAR over hidden-state "
                           "candidates; ties to the first name", "folds": folds}, Path(a.out))
    return 0


if __name__ == "__main__":
    run_main(main)
