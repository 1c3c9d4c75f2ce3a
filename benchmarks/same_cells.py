"""Do two pipeline runs agree on the cells they share? A reproducibility check between reports.

    python benchmarks/same_cells.py results/emodb/results.json results/emodb_deep/results.json

A cell is the same when fold, seed, downstream, source, GAN (arch, variant, seed), budget,
balance and ER recipe all match; it agrees when its test predictions are identical. Prints the
counts and the largest test-UAR gap, and writes them to --out (JSON) when given.
"""
import argparse
import json
from pathlib import Path

KEY = ("fold", "seed", "downstream", "source", "arch", "variant", "gan_seed", "ppc", "balance", "recipe")


def keyed(records: list[dict]) -> dict:
    """record -> its cell: every setting that makes it, so two runs' records of one cell line up."""
    return {tuple(r.get(k) for k in KEY): r for r in records}


def by_key(path: Path) -> dict:
    return keyed(json.loads(path.read_text())["records"])


def compare(a: Path, b: Path) -> dict:
    ra, rb = by_key(a), by_key(b)
    shared = sorted(set(ra) & set(rb), key=str)
    differ = [k for k in shared if ra[k]["predictions"] != rb[k]["predictions"]]
    gap = max((abs(ra[k]["test_uar"] - rb[k]["test_uar"]) for k in shared), default=0.0)
    return {"a": str(a), "b": str(b), "cells_a": len(ra), "cells_b": len(rb), "shared": len(shared),
            "identical_predictions": len(shared) - len(differ), "max_test_uar_gap": gap,
            "differing": [dict(zip(KEY, k)) for k in differ]}


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("a", type=Path)
    p.add_argument("b", type=Path)
    p.add_argument("--out", type=Path)
    args = p.parse_args()
    res = compare(args.a, args.b)
    print(f"{res['shared']} shared cells ({res['cells_a']} in a, {res['cells_b']} in b): "
          f"{res['identical_predictions']} with identical test predictions, "
          f"largest test-UAR gap {res['max_test_uar_gap']:.4f}")
    if args.out:
        args.out.write_text(json.dumps(res, indent=2) + "\n")


if __name__ == "__main__":
    main()
