"""Corpora for the SUPERB ER protocol: IEMOCAP (through s3prl's preprocessing), any corpus
listed in a manifest CSV, and built-in synthetic corpora (IEMOCAP and VoxCeleb1 layouts).

Every importer ends in ``<out>/corpus.json`` + ``<out>/meta_data/SessionK/*.json``
(meta.py); ``build_corpus(spec, out)`` is the single entry point the CLI and the pipeline use,
and it does nothing when ``corpus.json`` already records the same spec."""
from __future__ import annotations

import logging
import os
from pathlib import Path

from ..utils import UserError
from .audio import audio_info, load_audio
from .builtin import make_builtin_corpus
from .iemocap import import_iemocap
from .manifest import file_digest, import_manifest
from .meta import CORPUS_FILE, load_corpus, load_fold_meta, read_all_rows, resolve, write_meta
from .voxceleb import make_builtin_voxceleb

log = logging.getLogger("s3prl_dd.corpus")

SPEC_FIELDS = {
    "builtin": {"n_per_speaker": 40, "seed": 0},
    "manifest": {"csv": None, "label_map": {}},
    "iemocap": {"root": None},
}


def normalise_spec(spec: dict) -> dict:
    """Spec with defaults filled in and paths made absolute, so equal corpora compare equal."""
    if not isinstance(spec, dict) or "type" not in spec:
        raise UserError(f"corpus spec must be a mapping with a 'type' "
                        f"({' | '.join(SPEC_FIELDS)}), got {spec!r}")
    kind = spec["type"]
    if kind not in SPEC_FIELDS:
        raise UserError(f"corpus type '{kind}' is not one of {', '.join(SPEC_FIELDS)}")
    unknown = sorted(set(spec) - set(SPEC_FIELDS[kind]) - {"type"})
    if unknown:
        raise UserError(f"corpus spec field '{unknown[0]}' is not used by type '{kind}' "
                        f"(fields: {', '.join(SPEC_FIELDS[kind])})")
    out = {"type": kind}
    for key, dflt in SPEC_FIELDS[kind].items():
        value = spec.get(key, dflt)
        if value is None:
            raise UserError(f"corpus spec of type '{kind}' needs field '{key}'")
        if key in ("csv", "root"):
            value = str(Path(os.path.expanduser(str(value))).resolve())
        out[key] = value
    out["label_map"] = dict(out["label_map"]) if kind == "manifest" else None
    return {k: v for k, v in out.items() if v is not None}


def _up_to_date(out_dir: Path, spec: dict) -> dict | None:
    if not (out_dir / CORPUS_FILE).is_file():
        return None
    corpus = load_corpus(out_dir)
    if corpus.get("spec") != spec:
        raise UserError(f"{out_dir} already holds a corpus built from another spec "
                        f"({corpus.get('spec')}); use another directory or delete it")
    # a manifest may be edited in place: rebuild if its content changed
    if spec["type"] == "manifest" and Path(spec["csv"]).is_file() \
            and corpus.get("csv_sha256") != file_digest(Path(spec["csv"])):
        log.info("%s changed since %s was built: rebuilding", spec["csv"], out_dir)
        return None
    return corpus


def build_corpus(spec: dict, out_dir: str | os.PathLike) -> dict:
    """Builds (or reuses) the corpus described by ``spec`` in ``out_dir``; returns corpus.json.

    spec: ``{"type": "builtin", "n_per_speaker": 40, "seed": 0}``
        | ``{"type": "manifest", "csv": "...", "label_map": {...}}``
        | ``{"type": "iemocap", "root": "..."}``"""
    spec = normalise_spec(spec)
    out = Path(out_dir).resolve()
    corpus = _up_to_date(out, spec)
    if corpus is not None:
        log.info("corpus in %s is up to date", out)
        return corpus
    if spec["type"] == "builtin":
        return make_builtin_corpus(out, spec["n_per_speaker"], spec["seed"], spec=spec)
    if spec["type"] == "manifest":
        return import_manifest(spec["csv"], out, spec["label_map"], spec=spec)
    return import_iemocap(spec["root"], out, spec=spec)


__all__ = ["build_corpus", "normalise_spec", "load_audio", "audio_info", "make_builtin_corpus",
           "make_builtin_voxceleb", "import_manifest", "import_iemocap", "write_meta",
           "load_corpus", "load_fold_meta", "read_all_rows", "resolve", "CORPUS_FILE"]
