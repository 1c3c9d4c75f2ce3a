"""IEMOCAP through s3prl's own preprocessing, so that the utterance set and labels are exactly
the ones SUPERB uses (exc merged into hap, every other label dropped).

s3prl's ``preprocess(data_dirs, paths, out_path)`` is called once per session; its rows get a
session number and go through meta.py, which writes the leave-one-session-out folds (a
fold's train set is the union of the other sessions, the same as s3prl's ``main``)."""
from __future__ import annotations

import json
import logging
import os
import re
import tempfile
from collections import Counter
from pathlib import Path

from ..utils import UserError
from .meta import write_meta

log = logging.getLogger("s3prl_dd.corpus")

WAV_DIR = "sentences/wav"
LABEL_DIR = "dialog/EmoEvaluation"


def _s3prl_preprocess():
    """s3prl's function, with the compat shim for ``librosa.util.find_files`` in place."""
    try:
        from .. import compat

        compat.apply()
    except ImportError:  # the shim is optional when librosa itself is installed
        pass
    try:
        from s3prl.downstream.emotion.IEMOCAP_preprocess import preprocess
    except ImportError as e:
        raise UserError(f"cannot import s3prl's IEMOCAP preprocessing ({e}); install librosa "
                        f"or apply s3prl_dd.compat") from None
    return preprocess


def find_sessions(root: Path) -> dict[int, str]:
    """{K: "SessionK"} for the session folders under ``root``."""
    if not root.is_dir():
        raise UserError(f"IEMOCAP root not found: {root}")
    sessions = {}
    for p in sorted(root.iterdir()):
        m = re.fullmatch(r"Session(\d+)", p.name)
        if not (m and p.is_dir()):
            continue
        for sub in (WAV_DIR, LABEL_DIR):
            if not (p / sub).is_dir():
                raise UserError(f"{p}: missing folder {sub}/ (not an IEMOCAP session folder)")
        sessions[int(m.group(1))] = p.name
    if not sessions:
        raise UserError(f"no Session* folders in IEMOCAP root {root}")
    return sessions


def _preprocess_root(root: Path, stack) -> Path:
    """s3prl cuts each wav path at the first "Session" in its absolute path; if the root's own
    path contains that word the cut lands too early, so go through a symlink that does not."""
    if "Session" not in str(root):
        return root
    link = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="iemocap-"))) / "root"
    os.symlink(root, link, target_is_directory=True)
    return link


def read_session(preprocess, data_root: Path, name: str, k: int, tmp: Path) -> list[dict]:
    out = tmp / f"{name}.json"
    preprocess(str(data_root), [name], str(out))
    with open(out) as f:
        rows = json.load(f)["meta_data"]
    return [{**r, "session": k} for r in rows]


def import_iemocap(root: str | os.PathLike, out_dir: str | os.PathLike, name: str = "iemocap",
                   spec: dict | None = None) -> dict:
    """Writes meta data and ``corpus.json`` for an IEMOCAP(-layout) corpus under ``root``."""
    from contextlib import ExitStack

    root = Path(root).resolve()
    sessions = find_sessions(root)
    preprocess = _s3prl_preprocess()
    rows = []
    with ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="s3prl-dd-meta-")))
        data_root = _preprocess_root(root, stack)
        for k, session in sorted(sessions.items()):
            found = read_session(preprocess, data_root, session, k, tmp)
            if not found:
                raise UserError(f"{root / session}: no utterance with a neu/hap/exc/ang/sad label "
                                f"and a wav file (checked {LABEL_DIR}/*.txt against {WAV_DIR}/)")
            rows += found
    missing = [r["path"] for r in rows if not (root / r["path"]).is_file()]
    if missing:
        raise UserError(f"s3prl's preprocessing listed {missing[0]}, not found under {root}")

    per_session = Counter(r["session"] for r in rows)
    notes = [f"s3prl IEMOCAP_preprocess: {len(rows)} utterances "
             f"({', '.join(f'Session{k}: {n}' for k, n in sorted(per_session.items()))})"]
    log.info(notes[0])
    extra = {"spec": spec or {"type": "iemocap", "root": str(root)}, "notes": notes}
    return write_meta(rows, out_dir, name=name, source="iemocap", root=root,
                      n_sessions=max(sessions), extra=extra)
