"""Per fold, between pipeline runs that train one GAN arch with different settings, the generator
each fold's own dev split prefers; a results.json of the chosen generators' cells.

    python benchmarks/choose_per_fold.py --arch gan_mlp \\
        --candidate frames=results/layer_per_fold/emodb.json+results/layer_per_fold/emodb_seed2.json \\
        --candidate means=results/emodb_gan_mlp_means/results.json \\
        --out results/gan_mlp_standardize_per_fold/results.json

A candidate is a setting's runs (``+`` joins runs that hold other GAN seeds, e.g. a seed-2 run).
For every (fold, variant, GAN seed) the generator with the best quick-eval dev UAR (the trainer's
own ``best``: its fold's DEV split only, read from the runs' ``gans``) is kept; ties go to the
earlier candidate. The output holds the chosen generators' cells of ``--arch`` (every source drawn
from them) and the first candidate's cells of no generator (full real data, random subsets, herding,
DM, ...); it reads
like a pipeline run's results.json, so ``compare_sets.py`` and ``gan_targets.py`` take it.
Nothing is rerun and test is never read for the choice.

Refused unless the candidates are the same folds and test utterances, and the cells of no generator
they share (full real data, random subsets: the ER recipe and its seeds) have identical test
predictions: otherwise their GANs' cells were not scored the same way.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from same_cells import KEY, keyed  # noqa: E402
from s3prl_dd.errors import run_main  # noqa: E402
from s3prl_dd.pipeline.config import gan_key  # noqa: E402
from s3prl_dd.pipeline.layers import choose as best_on_dev  # noqa: E402
from s3prl_dd.utils import UserError, atomic_write_json  # noqa: E402


def parse_candidate(text: str) -> tuple[str, list[Path]]:
    name, sep, paths = text.partition("=")
    if not sep or not name or not paths:
        raise UserError(f"--candidate {text!r}: give NAME=RESULTS.json[+RESULTS.json...]")
    return name, [Path(q) for q in paths.split("+")]


def load_candidate(name: str, paths: list[Path]) -> dict:
    """One setting's runs merged: their records, GAN summaries (by GAN name) and first config."""
    records, gans, configs = [], {}, []
    for path in paths:
        if not path.is_file():
            raise UserError(f"candidate {name}: no results.json at {path}")
        run = json.loads(path.read_text())
        if not isinstance(run, dict) or not {"records", "config"} <= set(run):
            raise UserError(f"candidate {name}: {path} is not a pipeline run's results.json")
        if not run.get("gans"):
            raise UserError(f"candidate {name}: {path} lists no GANs (their dev UAR is what the choice reads)")
        twice = sorted(set(gans) & {g["gan"] for g in run["gans"]})
        if twice:
            raise UserError(f"candidate {name}: {', '.join(twice)} in more than one of its runs")
        gans.update({g["gan"]: g for g in run["gans"]})
        records += run["records"]
        configs.append(run["config"])
    return {"name": name, "paths": [str(q) for q in paths], "records": records, "gans": gans, "config": configs[0]}


def check_same_scoring(candidates: list[dict]) -> int:
    """The candidates' shared cells of no generator agree to the prediction; returns how many."""
    first = keyed(r for r in candidates[0]["records"] if r.get("arch") is None)
    folds = {r["fold"] for r in candidates[0]["records"]}
    n = 0
    for other in candidates[1:]:
        theirs = keyed(r for r in other["records"] if r.get("arch") is None)
        if {r["fold"] for r in other["records"]} != folds:
            raise UserError(f"candidates {candidates[0]['name']} and {other['name']} hold other folds")
        shared = set(first) & set(theirs)
        if not any(dict(zip(KEY, k))["source"] == "real" for k in shared):
            raise UserError(f"candidates {candidates[0]['name']} and {other['name']} share no full-real cell")
        differ = [k for k in shared if first[k]["predictions"] != theirs[k]["predictions"]
                  or first[k].get("test_labels") != theirs[k].get("test_labels")]
        if differ:
            raise UserError(f"{len(differ)} of the {len(shared)} cells {candidates[0]['name']} and {other['name']} share "
                            f"differ (e.g. {dict(zip(KEY, differ[0]))}): not scored the same way")
        n += len(shared)
    return n


def choose(candidates: list[dict], arch: str) -> dict[str, dict]:
    """GAN name -> {candidate: dev UAR, ..., "chosen": name} for every GAN of ``arch`` all candidates hold."""
    names = [set(g for g in c["gans"] if g.startswith(f"{arch}-")) for c in candidates]
    shared = sorted(set.intersection(*names))
    if not shared:
        raise UserError(f"no {arch} GAN is in every candidate ({', '.join(c['name'] for c in candidates)})")
    choice = {}
    for gan in shared:
        dev = {c["name"]: 100 * c["gans"][gan]["best_dev_uar"] for c in candidates}
        choice[gan] = {**dev, "chosen": best_on_dev(dev, list(dev))}
    return choice


def chosen_records(candidates: list[dict], arch: str, choice: dict[str, dict]) -> list[dict]:
    out = [r for r in candidates[0]["records"] if r.get("arch") is None]
    for c in candidates:
        mine = {g for g, ch in choice.items() if ch["chosen"] == c["name"]}
        out += [{**r, "candidate": c["name"]} for r in c["records"]
                if r.get("arch") == arch and gan_key(arch, r["variant"], r["fold"], r["gan_seed"]) in mine]
    return sorted(out, key=lambda r: (r["fold"], str(tuple(r.get(k) for k in KEY))))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--arch", required=True, help="the GAN arch whose settings differ between the candidates")
    p.add_argument("--candidate", action="append", required=True, help="NAME=RESULTS.json[+RESULTS.json...], twice or more")
    p.add_argument("--out", required=True, help="the results.json of the chosen cells")
    a = p.parse_args(argv)
    parsed = [parse_candidate(t) for t in a.candidate]
    if len(parsed) < 2 or len({n for n, _ in parsed}) < len(parsed):
        raise UserError("give two or more --candidate, each with its own name")
    candidates = [load_candidate(n, paths) for n, paths in parsed]
    shared = check_same_scoring(candidates)
    choice = choose(candidates, a.arch)
    records = chosen_records(candidates, a.arch, choice)
    by_name = {c["name"]: c for c in candidates}
    gans = [{**by_name[ch["chosen"]]["gans"][g], "candidate": ch["chosen"]} for g, ch in choice.items()]
    config = {**candidates[0]["config"], "name": Path(a.out).parent.name,
              "choice": {"arch": a.arch, "candidates": {c["name"]: {"runs": c["paths"], "gan": c["config"]["gan"]} for c in candidates}}}
    atomic_write_json({"records": records, "config": config, "gans": gans, "choice": choice, "n_cells": len(records),
                       "identical_shared_cells": shared,
                       "note": "per (fold, variant, GAN seed): the generator with the best quick-eval dev UAR "
                               "(ties: the earlier candidate); test never read for it"}, Path(a.out))
    print(f"{shared} shared cells of no generator identical across candidates")
    for gan, ch in choice.items():
        print(f"{gan}: " + ", ".join(f"{c['name']} {ch[c['name']]:.1f}" for c in candidates) + f" -> {ch['chosen']}")
    counts = {c["name"]: sum(ch["chosen"] == c["name"] for ch in choice.values()) for c in candidates}
    print("chosen: " + ", ".join(f"{n} {k} of {len(choice)}" for n, k in counts.items()))
    return 0


if __name__ == "__main__":
    run_main(main)
