"""A built-in speaker-ID corpus in VoxCeleb1's layout, for the SID probe::

    <out>/wav/id10001/<video>/00001.wav     16 kHz mono PCM16
    <out>/iden_split.txt                    "<split> id10001/<video>/00001.wav", 1/2/3 = train/dev/test
    <out>/voxceleb.json                     spec and counts

Speaker ids are consecutive from id10001, as s3prl's voxceleb1 expert derives the class from
the id (``int(id[2:]) - 10001``). Each speaker has a voice of its own (synth.make_voice) and
speaks with random emotions; each video has its own recording channel, as in VoxCeleb, so
identity must be recognised across channels. Every speaker appears in all three splits.

s3prl's dataset finds files with ``Path(file_path).glob("*/wav/" + name)``: set its
``file_path`` to the folder *above* ``<out>`` (recorded as ``s3prl_file_path``)."""
from __future__ import annotations

import json
import logging
import os
import shutil
import string
from pathlib import Path

import numpy as np
import soundfile as sf

from ..protocol import SAMPLE_RATE
from ..utils import UserError, atomic_write_json, atomic_write_text
from . import synth

log = logging.getLogger("s3prl_dd.corpus")

FIRST_ID = 10001
VIDEOS_PER_SPEAKER = 3
DURATION = (1.0, 3.0)
EMOTION_LABELS = ("neu", "hap", "ang", "sad")
INFO_FILE = "voxceleb.json"
_ALPHABET = string.ascii_letters + string.digits + "-_"
_VOICE, _VIDEO, _UTT = 21, 22, 23  # seed tags, distinct from builtin.py's


def split_counts(n: int) -> tuple[int, int, int]:
    """(train, dev, test) utterances of one speaker: about 70/15/15, at least one each."""
    n_dev = n_test = max(1, int(round(0.15 * n)))
    return n - n_dev - n_test, n_dev, n_test


def _video_id(rng: np.random.Generator) -> str:
    return "".join(_ALPHABET[i] for i in rng.integers(len(_ALPHABET), size=11))


def make_builtin_voxceleb(out_dir: str | os.PathLike, n_speakers: int = 40,
                          utts_per_speaker: int = 12, seed: int = 0) -> dict:
    """Writes the corpus (skipped when ``voxceleb.json`` already records the same spec) and
    returns the contents of ``voxceleb.json``."""
    if not isinstance(n_speakers, int) or n_speakers < 2:
        raise UserError(f"n_speakers must be an integer >= 2, got {n_speakers!r}")
    if not isinstance(utts_per_speaker, int) or utts_per_speaker < 3:
        raise UserError(f"utts_per_speaker must be an integer >= 3 (train, dev and test), "
                        f"got {utts_per_speaker!r}")
    out = Path(out_dir).resolve()
    spec = {"type": "builtin_voxceleb", "n_speakers": n_speakers,
            "utts_per_speaker": utts_per_speaker, "seed": seed}
    info_path = out / INFO_FILE
    if info_path.is_file():
        with open(info_path) as f:
            info = json.load(f)
        if info.get("spec") == spec:
            log.info("voxceleb corpus in %s is up to date", out)
            return info
    if (out / "wav").exists():
        if not info_path.is_file() and any((out / "wav").iterdir()):
            raise UserError(f"{out / 'wav'} exists and was not made by the built-in generator")
        shutil.rmtree(out / "wav")

    lines, counts = [], {"train": 0, "dev": 0, "test": 0}
    for s in range(n_speakers):
        spk = f"id{FIRST_ID + s}"
        rng = np.random.default_rng([seed, _VOICE, s])
        voice = synth.make_voice(rng, "F" if rng.random() < 0.5 else "M")
        videos = [(_video_id(rng), synth.make_channel(rng)) for _ in range(VIDEOS_PER_SPEAKER)]
        n_train, n_dev, n_test = split_counts(utts_per_speaker)
        splits = np.array([1] * n_train + [2] * n_dev + [3] * n_test)[rng.permutation(utts_per_speaker)]
        per_video = [0] * VIDEOS_PER_SPEAKER
        for i in range(utts_per_speaker):
            v = i % VIDEOS_PER_SPEAKER
            per_video[v] += 1
            video, channel = videos[v]
            urng = np.random.default_rng([seed, _UTT, s, i])
            style = synth.draw_style(urng, EMOTION_LABELS[urng.integers(len(EMOTION_LABELS))])
            wav = synth.render(urng, voice, style, channel, float(urng.uniform(*DURATION)))
            rel = f"{spk}/{video}/{per_video[v]:05d}.wav"
            (out / "wav" / rel).parent.mkdir(parents=True, exist_ok=True)
            sf.write(str(out / "wav" / rel), wav, SAMPLE_RATE, subtype="PCM_16")
            lines.append(f"{splits[i]} {rel}")
            counts[("train", "dev", "test")[splits[i] - 1]] += 1
    atomic_write_text("\n".join(lines) + "\n", out / "iden_split.txt")
    info = {"spec": spec, "root": str(out), "iden_split": str(out / "iden_split.txt"),
            "s3prl_file_path": str(out.parent), "n_speakers": n_speakers,
            "speakers": [f"id{FIRST_ID}", f"id{FIRST_ID + n_speakers - 1}"], "counts": counts}
    atomic_write_json(info, info_path)
    log.info("voxceleb-layout corpus: %d speakers, %s -> %s", n_speakers, counts, out)
    return info
