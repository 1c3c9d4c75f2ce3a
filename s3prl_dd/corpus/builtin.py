"""The built-in synthetic emotion corpus, laid out like IEMOCAP so that s3prl's own
IEMOCAP preprocessing reads it::

    <out>/SessionK/sentences/wav/<dialog>/<utt>.wav        16 kHz mono PCM16
    <out>/SessionK/dialog/EmoEvaluation/<dialog>.txt       "[start - end]\\tutt\\tlabel\\t[V, A, D]"
    <out>/meta_data/SessionK/{train,test}_meta_data.json   leave-one-session-out (meta.py)
    <out>/corpus.json

Five sessions of one woman and one man each. Every dialog holds one speaker's turns
(``Ses01F_impro01`` only has ``Ses01F_impro01_F000``...), so the "speaker" field that s3prl's
preprocessing derives from the dialog name is the true speaker. Per speaker, ``n_per_speaker``
utterances carry the 4 target classes in IEMOCAP's proportions (neu 1708 : hap+exc 1636 :
ang 1103 : sad 1084, about 64% of hap written as ``exc``), and about 10% more carry labels the
protocol drops (fru, sur, xxx). Everything is a deterministic function of ``seed``."""
from __future__ import annotations

import logging
import math
import os
import shutil
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from ..protocol import LABEL_ALIASES, LABELS, N_FOLDS, SAMPLE_RATE
from ..utils import UserError, atomic_write_text
from . import synth
from .meta import CORPUS_FILE, write_meta

log = logging.getLogger("s3prl_dd.corpus")

# IEMOCAP's utterance counts per class (hap and exc merged by the protocol).
CLASS_WEIGHTS = {"neu": 1708, "hap": 1636, "ang": 1103, "sad": 1084}
EXC_SHARE = 1041 / 1636
DROPPED = ("fru", "sur", "xxx")
SPEAKERS = ("F", "M")
DIALOG_SIZE = 15
DURATION = (1.0, 3.0)
# Calibrated with calibrate.py at the default size: the linear ER proxy gives 70.3 / 71.7 / 66.8%
# UAR (seeds 0 / 1 / 2), speaker ID 80-86%. The EmoDB copy gives 68.9% with the same proxy.
SEPARATION, SPREAD = 1.1, 1.0
VAD = {"neu": (3.0, 2.5, 2.5), "hap": (4.0, 3.0, 3.0), "exc": (4.0, 3.5, 3.5), "ang": (1.5, 4.0, 4.0),
       "sad": (1.5, 2.0, 2.0), "fru": (2.0, 3.5, 3.5), "sur": (3.5, 4.0, 3.0), "xxx": (2.5, 3.0, 3.0)}
NAMES = {"neu": "Neutral state", "hap": "Happiness", "exc": "Excited", "ang": "Anger",
         "sad": "Sadness", "fru": "Frustration", "sur": "Surprise", "xxx": "Other"}
MARKER = ".s3prl_dd_builtin"

# Seed tags: each random stream is keyed by what it is for, so changing one part (say the
# number of utterances) does not reshuffle the voices.
_VOICE, _LABELS, _CHANNEL, _UTT = 11, 12, 13, 14


@dataclass(frozen=True)
class Utt:
    session: int
    sex: str         # F or M: the session's speaker
    index: int       # position in the speaker's utterance list
    dialog: str      # Ses01F_impro01
    name: str        # Ses01F_impro01_F000
    raw_label: str   # as written in EmoEvaluation (exc, fru...)
    duration: float
    start: float     # turn time in the dialog, for the EmoEvaluation line

    @property
    def label(self) -> str | None:
        """Protocol label, or None when the protocol drops it."""
        lab = LABEL_ALIASES.get(self.raw_label, self.raw_label)
        return lab if lab in LABELS else None

    @property
    def speaker(self) -> str:
        return f"Ses{self.session:02d}{self.sex}"

    @property
    def path(self) -> str:
        return f"Session{self.session}/sentences/wav/{self.dialog}/{self.name}.wav"


def class_quota(n: int, weights: dict = CLASS_WEIGHTS) -> dict:
    """Largest-remainder apportionment of ``n`` utterances to classes by ``weights``."""
    total = sum(weights.values())
    exact = {k: n * w / total for k, w in weights.items()}
    quota = {k: int(math.floor(v)) for k, v in exact.items()}
    # the largest fractional parts get the leftover units; ties go to the first class
    order = sorted(exact, key=lambda k: (quota[k] - exact[k], list(weights).index(k)))
    for k in order[: n - sum(quota.values())]:
        quota[k] += 1
    return quota


def speaker_labels(rng: np.random.Generator, n_per_speaker: int) -> list[str]:
    """Raw labels of one speaker's utterances, shuffled."""
    quota = class_quota(n_per_speaker)
    n_exc = int(round(quota["hap"] * EXC_SHARE))
    labels = (["neu"] * quota["neu"] + ["hap"] * (quota["hap"] - n_exc) + ["exc"] * n_exc
              + ["ang"] * quota["ang"] + ["sad"] * quota["sad"])
    n_other = max(len(DROPPED), int(round(0.1 * n_per_speaker)))
    labels += [DROPPED[i % len(DROPPED)] for i in range(n_other)]
    return [labels[i] for i in rng.permutation(len(labels))]


def plan_corpus(n_per_speaker: int = 40, seed: int = 0) -> list[Utt]:
    """Every utterance of the corpus (dropped labels included), in session/speaker order."""
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise UserError(f"seed must be a non-negative integer, got {seed!r}")
    if not isinstance(n_per_speaker, int) or isinstance(n_per_speaker, bool) or n_per_speaker < 4:
        raise UserError(f"n_per_speaker must be an integer >= 4 (one per class), got {n_per_speaker!r}")
    utts = []
    for k in range(1, N_FOLDS + 1):
        for g, sex in enumerate(SPEAKERS):
            rng = np.random.default_rng([seed, _LABELS, k, g])
            labels = speaker_labels(rng, n_per_speaker)
            t = 0.0
            for i, raw in enumerate(labels):
                d, j = divmod(i, DIALOG_SIZE)
                if j == 0:
                    t = 0.0
                dialog = f"Ses{k:02d}{sex}_impro{d + 1:02d}"
                dur = float(np.round(rng.uniform(*DURATION), 4))
                t += float(rng.uniform(0.3, 3.0))
                utts.append(Utt(k, sex, i, dialog, f"{dialog}_{sex}{j:03d}", raw, dur, round(t, 4)))
                t += dur
    return utts


def voices(seed: int) -> dict:
    return {(k, sex): synth.make_voice(np.random.default_rng([seed, _VOICE, k, g]), sex)
            for k in range(1, N_FOLDS + 1) for g, sex in enumerate(SPEAKERS)}


def channels(seed: int) -> dict:
    return {k: synth.make_channel(np.random.default_rng([seed, _CHANNEL, k]))
            for k in range(1, N_FOLDS + 1)}


def render_utt(utt: Utt, seed: int, voice_table: dict, channel_table: dict,
               separation: float = SEPARATION, spread: float = SPREAD) -> np.ndarray:
    rng = np.random.default_rng([seed, _UTT, utt.session, SPEAKERS.index(utt.sex), utt.index])
    style = synth.draw_style(rng, utt.raw_label, separation, spread)
    return synth.render(rng, voice_table[(utt.session, utt.sex)], style, channel_table[utt.session],
                        utt.duration)


def _emo_line(utt: Utt, rng: np.random.Generator) -> str:
    vad = [round(2 * (v + rng.normal(0, 0.3))) / 2 for v in VAD[utt.raw_label]]
    vad = [min(5.0, max(1.0, v)) for v in vad]
    end = utt.start + utt.duration
    return (f"[{utt.start:.4f} - {end:.4f}]\t{utt.name}\t{utt.raw_label}\t"
            f"[{vad[0]:.4f}, {vad[1]:.4f}, {vad[2]:.4f}]\n"
            f"C-E1:\t{NAMES[utt.raw_label]};\t()\nC-E2:\t{NAMES[utt.raw_label]};\t()\n\n")


def write_emo_evaluation(root: Path, utts: list[Utt], seed: int) -> None:
    by_dialog: dict[tuple[int, str], list[Utt]] = {}
    for u in utts:
        by_dialog.setdefault((u.session, u.dialog), []).append(u)
    for (k, dialog), items in by_dialog.items():
        rng = np.random.default_rng([seed, _LABELS, k, sum(map(ord, dialog))])
        text = "% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]\n\n"
        text += "".join(_emo_line(u, rng) for u in items)
        atomic_write_text(text, root / f"Session{k}" / "dialog" / "EmoEvaluation" / f"{dialog}.txt")


def _prepare_dir(out: Path) -> None:
    """Start from a clean slate, but only delete what an earlier (interrupted) run of this
    generator wrote, never a user's folders."""
    sessions = [p for p in out.glob("Session*") if p.is_dir()]
    if sessions and not (out / MARKER).exists():
        raise UserError(f"{out} already holds {sessions[0].name}/ not made by the built-in generator; "
                        f"choose an empty directory")
    for p in sessions + [out / "meta_data"]:
        if p.exists():
            shutil.rmtree(p)
    # corpus.json marks a finished corpus: gone until this run finishes
    (out / CORPUS_FILE).unlink(missing_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    (out / MARKER).write_text("written by s3prl_dd.corpus.builtin\n")


def make_builtin_corpus(out_dir: str | os.PathLike, n_per_speaker: int = 40, seed: int = 0, *,
                        separation: float = SEPARATION, spread: float = SPREAD,
                        spec: dict | None = None) -> dict:
    """Writes the synthetic corpus, its meta data and ``corpus.json``; returns the latter."""
    out = Path(out_dir).resolve()
    utts = plan_corpus(n_per_speaker, seed)
    _prepare_dir(out)
    vt, ct = voices(seed), channels(seed)
    for u in utts:
        wav = render_utt(u, seed, vt, ct, separation, spread)
        path = out / u.path
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(str(path), wav, SAMPLE_RATE, subtype="PCM_16")
    write_emo_evaluation(out, utts, seed)

    rows = [{"path": u.path, "label": u.label, "speaker": u.speaker, "session": u.session}
            for u in utts if u.label is not None]
    raw = Counter(u.raw_label for u in utts)
    dropped = {k: raw[k] for k in DROPPED if raw[k]}
    notes = [f"synthetic: {N_FOLDS} sessions x {len(SPEAKERS)} speakers, {n_per_speaker} "
             f"target-class utterances per speaker, seed {seed}",
             f"dropped {sum(dropped.values())} utterances with labels {dropped} "
             f"(as s3prl's preprocessing)",
             f"{raw['exc']} 'exc' utterances merged into 'hap'"]
    for note in notes:
        log.info(note)
    extra = {"spec": spec or {"type": "builtin", "n_per_speaker": n_per_speaker, "seed": seed},
             "notes": notes, "raw_label_counts": dict(sorted(raw.items())),
             "generator": {"separation": separation, "spread": spread, "sample_rate": SAMPLE_RATE}}
    return write_meta(rows, out, name=f"builtin-iemocap-{n_per_speaker}x10-seed{seed}",
                      source="builtin", root=out, extra=extra)


__all__ = ["make_builtin_corpus", "plan_corpus", "render_utt", "voices", "channels", "class_quota"]
