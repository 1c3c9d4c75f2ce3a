"""SUPERB ER meta data per fold, in the format s3prl's IEMOCAP preprocessing writes, plus
``corpus.json``: the one file later stages read to find a corpus.

Layout written under ``out_dir``::

    meta_data/SessionK/train_meta_data.json   # every session but K
    meta_data/SessionK/test_meta_data.json    # session K
    corpus.json                               # written last: its presence marks completion

A row is ``{"path", "label", "speaker", "session"}``; ``path`` is relative to the corpus
``root`` (s3prl joins ``root`` and ``path``) or absolute."""
from __future__ import annotations

import json
import logging
import os
from collections import Counter
from pathlib import Path

from ..protocol import LABELS, N_FOLDS
from ..utils import UserError, atomic_write_json, default

log = logging.getLogger("s3prl_dd.corpus")

CORPUS_FILE = "corpus.json"
META_DIR = "meta_data"
ROW_KEYS = ("path", "label", "speaker", "session")


def _where(row: dict) -> str:
    # rows may carry "_where" (e.g. "er4.csv line 12") so errors point at the user's file
    return row.get("_where") or f"row with path '{row.get('path')}'"


def validate_rows(rows: list[dict], n_sessions: int | None = None) -> int:
    """Checks labels, sessions and that every fold can train every class; returns n_sessions."""
    if not rows:
        raise UserError("the corpus has no utterances")
    for row in rows:
        for key in ROW_KEYS:
            if row.get(key) in (None, ""):
                raise UserError(f"{_where(row)}: field '{key}' is empty")
        if row["label"] not in LABELS:
            raise UserError(f"{_where(row)}: unknown label '{row['label']}' "
                            f"(expected one of {', '.join(LABELS)})")
        s = row["session"]
        if not isinstance(s, int) or isinstance(s, bool) or s < 1:
            raise UserError(f"{_where(row)}: session must be an integer >= 1, got {s!r}")
    dup = [p for p, c in Counter(r["path"] for r in rows).items() if c > 1]
    if dup:
        raise UserError(f"path '{dup[0]}' is listed more than once ({len(dup)} duplicated paths)")

    n_sessions = default(n_sessions, max(r["session"] for r in rows))
    counts = session_counts(rows, n_sessions)
    for k in range(1, n_sessions + 1):
        if sum(counts[f"Session{k}"].values()) == 0:
            raise UserError(f"session {k} has no utterances (sessions must be numbered 1..{n_sessions})")
    beyond = sorted({r["session"] for r in rows if r["session"] > n_sessions})
    if beyond:
        raise UserError(f"session {beyond[0]} is beyond n_sessions={n_sessions}")
    for k in range(1, n_sessions + 1):
        for label in LABELS:
            n_train = sum(counts[f"Session{j}"][label] for j in range(1, n_sessions + 1) if j != k)
            if n_train == 0:
                raise UserError(f"fold{k} (test = Session{k}) has no training utterances of class "
                                f"'{label}': every class must occur outside each session")
    if n_sessions != N_FOLDS:
        log.warning("corpus has %d sessions; the SUPERB ER protocol uses %d folds", n_sessions, N_FOLDS)
    return n_sessions


def session_counts(rows: list[dict], n_sessions: int) -> dict:
    counts = {f"Session{k}": {label: 0 for label in LABELS} for k in range(1, n_sessions + 1)}
    for r in rows:
        key = f"Session{r['session']}"
        if key in counts and r["label"] in LABELS:
            counts[key][r["label"]] += 1
    return counts


def _clean(row: dict) -> dict:
    return {"path": str(row["path"]), "label": row["label"], "speaker": str(row["speaker"]),
            "session": int(row["session"])}


def _meta_json(rows: list[dict]) -> dict:
    return {"labels": dict(LABELS), "meta_data": rows}


def write_meta(rows: list[dict], out_dir: str | os.PathLike, *, name: str, source: str,
               root: str | os.PathLike, n_sessions: int | None = None,
               extra: dict | None = None) -> dict:
    """Validates ``rows``, writes leave-one-session-out meta data and ``corpus.json``.

    Rows are sorted by path so that the same corpus always gives byte-identical files (s3prl's
    own preprocessing follows ``os.listdir`` order, which differs between file systems)."""
    n_sessions = validate_rows(rows, n_sessions)
    rows = sorted((_clean(r) for r in rows), key=lambda r: r["path"])
    out_dir = Path(out_dir).resolve()
    meta_dir = out_dir / META_DIR
    for k in range(1, n_sessions + 1):
        test = [r for r in rows if r["session"] == k]
        train = [r for r in rows if r["session"] != k]
        atomic_write_json(_meta_json(train), meta_dir / f"Session{k}" / "train_meta_data.json")
        atomic_write_json(_meta_json(test), meta_dir / f"Session{k}" / "test_meta_data.json")

    corpus = {
        "name": name,
        "source": source,
        "root": str(Path(root).resolve()),
        "meta_data": str(meta_dir),
        "n_sessions": n_sessions,
        "n_utterances": len(rows),
        "labels": dict(LABELS),
        "counts": session_counts(rows, n_sessions),
        "speakers": sorted({r["speaker"] for r in rows}),
    }
    corpus.update(extra or {})
    corpus.setdefault("notes", [])
    atomic_write_json(corpus, out_dir / CORPUS_FILE)
    log.info("corpus '%s': %d utterances in %d sessions -> %s", name, len(rows), n_sessions, out_dir)
    return corpus


def load_corpus(corpus_dir: str | os.PathLike) -> dict:
    """The ``corpus.json`` written by :func:`write_meta`."""
    path = Path(corpus_dir) / CORPUS_FILE
    if not path.is_file():
        hint = " (the directory does not exist)" if not Path(corpus_dir).exists() else ""
        raise UserError(f"no {CORPUS_FILE} in {corpus_dir}{hint}: build the corpus first")
    try:
        with open(path) as f:
            corpus = json.load(f)
    except json.JSONDecodeError as e:
        raise UserError(f"{path} is not valid JSON: {e}") from None
    missing = [k for k in ("root", "meta_data", "n_sessions", "labels") if k not in corpus]
    if missing:
        raise UserError(f"{path} lacks field '{missing[0]}'")
    return corpus


def load_fold_meta(corpus: dict, fold: int, split: str) -> list[dict]:
    """Rows of ``SessionK/{split}_meta_data.json``; ``split`` is "train" or "test"."""
    if split not in ("train", "test"):
        raise UserError(f"split must be 'train' or 'test', got '{split}'")
    path = Path(corpus["meta_data"]) / f"Session{fold}" / f"{split}_meta_data.json"
    if not path.is_file():
        raise UserError(f"meta data file not found: {path}")
    with open(path) as f:
        return json.load(f)["meta_data"]


def read_all_rows(corpus: dict) -> list[dict]:
    """Every utterance once (the test sets of all folds), sorted by path."""
    rows = [r for k in range(1, corpus["n_sessions"] + 1) for r in load_fold_meta(corpus, k, "test")]
    return sorted(rows, key=lambda r: r["path"])


def resolve(corpus: dict, path: str) -> str:
    """Absolute audio path of a meta row's ``path``."""
    return path if os.path.isabs(path) else os.path.join(corpus["root"], path)


__all__ = ["write_meta", "load_corpus", "load_fold_meta", "read_all_rows", "resolve",
           "validate_rows", "session_counts", "CORPUS_FILE", "META_DIR"]
