"""Any emotion corpus given as a CSV manifest (EmoDB, RAVDESS, CREMA-D...).

The CSV has a header ``path,label,speaker[,session]``; ``path`` is relative to the CSV's
folder (or absolute). Raw labels go through, in order: the user's ``label_map``, then
protocol.LABEL_ALIASES and the common full names below; rows whose label is still not one of
neu/hap/ang/sad are dropped and counted. Without a session column, speakers are sorted by id
and dealt round-robin into sessions 1..5 (speaker i -> session i % 5 + 1). That pairs speakers
by rank, not by sex: for EmoDB-like ids (the 10 actors 03..16) each session gets two
actors of whatever sex, so add a session column to get IEMOCAP's one woman + one man.

Every file is checked with ``audio_info``: files not at 16 kHz are resampled when loaded and
multichannel files are mixed to mono; both counts go to the log and to corpus.json."""
from __future__ import annotations

import csv
import hashlib
import logging
import os
from collections import Counter
from pathlib import Path

from ..protocol import LABEL_ALIASES, LABELS, N_FOLDS, SAMPLE_RATE
from ..utils import UserError
from .audio import audio_info
from .meta import write_meta

log = logging.getLogger("s3prl_dd.corpus")

REQUIRED = ("path", "label", "speaker")
# Full names and abbreviations that corpora commonly use for the four protocol classes.
DEFAULT_LABEL_MAP = {
    **{k: k for k in LABELS}, **LABEL_ALIASES,
    "neutral": "neu", "happiness": "hap", "happy": "hap", "joy": "hap", "anger": "ang",
    "angry": "ang", "sadness": "sad", "sad": "sad",
}


def _normalise_map(label_map: dict | None) -> dict:
    """User map (keys lower-cased) whose targets are protocol labels, or an error naming the
    bad entry. A target may itself be a full name ("happy")."""
    out = {}
    for raw, target in (label_map or {}).items():
        mapped = DEFAULT_LABEL_MAP.get(str(target).strip().lower()) if target is not None else None
        if mapped is None and target is not None:
            raise UserError(f"label_map['{raw}'] = '{target}' is not one of {', '.join(LABELS)} "
                            f"(map to null to drop a label)")
        out[str(raw).strip().lower()] = mapped
    return out


def map_label(raw: str, user_map: dict) -> str | None:
    key = raw.strip().lower()
    if key in user_map:
        return user_map[key]
    return DEFAULT_LABEL_MAP.get(key)


def read_manifest(csv_path: Path) -> list[dict]:
    """Rows of the CSV as dicts plus ``_line`` (1-based line number in the file)."""
    if not csv_path.is_file():
        raise UserError(f"manifest not found: {csv_path}")
    with open(csv_path, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        header = [h.strip() for h in (reader.fieldnames or [])]
        missing = [c for c in REQUIRED if c not in header]
        if missing:
            raise UserError(f"manifest {csv_path}: missing column '{missing[0]}' "
                            f"(header is: {','.join(header) or '<empty>'}; "
                            f"expected path,label,speaker[,session])")
        reader.fieldnames = header
        return [{**{k: (v or "").strip() for k, v in row.items() if k}, "_line": reader.line_num}
                for row in reader]


def assign_sessions(speakers: list[str], n_sessions: int = N_FOLDS) -> dict:
    """Speakers sorted by id, dealt round-robin into sessions 1..n."""
    ordered = sorted(set(speakers))
    if len(ordered) < n_sessions:
        raise UserError(f"only {len(ordered)} speakers: need at least {n_sessions} to form "
                        f"{n_sessions} sessions (or add a 'session' column)")
    return {spk: i % n_sessions + 1 for i, spk in enumerate(ordered)}


def _session(value: str, where: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise UserError(f"{where}: session '{value}' is not an integer") from None


def scan_audio(rows: list[dict], root: Path, csv_name: str) -> dict:
    """audio_info on every file; counts of files that will be resampled / mixed to mono."""
    rates, stereo, seconds = Counter(), 0, 0.0
    for r in rows:
        path = Path(r["path"]) if os.path.isabs(r["path"]) else root / r["path"]
        try:
            sr, ch, frames = audio_info(path)
        except UserError as e:
            raise UserError(f"{csv_name} line {r['_line']}: {e}") from None
        rates[sr] += 1
        stereo += ch > 1
        seconds += frames / sr
    resampled = sum(n for sr, n in rates.items() if sr != SAMPLE_RATE)
    return {"n_resampled": resampled, "n_multichannel": stereo,
            "sample_rates": {str(k): v for k, v in sorted(rates.items())},
            "hours": round(seconds / 3600, 4)}


def file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def import_manifest(csv_path: str | os.PathLike, out_dir: str | os.PathLike,
                    label_map: dict | None = None, name: str | None = None,
                    spec: dict | None = None) -> dict:
    """Writes meta data and ``corpus.json`` for the corpus listed in ``csv_path``."""
    csv_path = Path(csv_path).resolve()
    user_map = _normalise_map(label_map)
    raw_rows = read_manifest(csv_path)
    if not raw_rows:
        raise UserError(f"manifest {csv_path} has a header but no rows")
    root = csv_path.parent
    has_session = any("session" in r for r in raw_rows)

    rows, dropped = [], Counter()
    for r in raw_rows:
        where = f"{csv_path.name} line {r['_line']}"
        for col in REQUIRED:
            if not r.get(col):
                raise UserError(f"{where}: column '{col}' is empty")
        label = map_label(r["label"], user_map)
        if label not in LABELS:
            dropped[r["label"]] += 1
            continue
        row = {"path": r["path"], "label": label, "speaker": r["speaker"], "_where": where,
               "_line": r["_line"]}
        if has_session:
            row["session"] = _session(r.get("session", ""), where)
        rows.append(row)
    if not rows:
        raise UserError(f"manifest {csv_path}: no row has a usable label (labels found: "
                        f"{sorted(dropped)}); map them with label_map to {', '.join(LABELS)}")

    notes = []
    if dropped:
        notes.append(f"dropped {sum(dropped.values())} rows with labels {dict(sorted(dropped.items()))}")
    if not has_session:
        sessions = assign_sessions([r["speaker"] for r in rows])
        for r in rows:
            r["session"] = sessions[r["speaker"]]
        notes.append("no session column: speakers sorted by id and assigned round-robin to "
                     f"sessions 1..{N_FOLDS}: {sessions}")
    audio = scan_audio(rows, root, csv_path.name)
    if audio["n_resampled"]:
        notes.append(f"{audio['n_resampled']} files are not {SAMPLE_RATE} Hz "
                     f"(rates {audio['sample_rates']}): resampled when loaded")
    if audio["n_multichannel"]:
        notes.append(f"{audio['n_multichannel']} files have more than one channel: "
                     f"mixed to mono when loaded")
    for note in notes:
        log.info("%s: %s", csv_path.name, note)

    extra = {"spec": spec or {"type": "manifest", "csv": str(csv_path), "label_map": label_map or {}},
             "csv_sha256": file_digest(csv_path), "dropped": dict(sorted(dropped.items())),
             "audio": audio, "notes": notes}
    return write_meta(rows, out_dir, name=name or csv_path.parent.name, source="manifest",
                      root=root, extra=extra)
