"""SUPERB SID (s3prl's own ``-d voxceleb1`` recipe) on the SER probe upstream, and its results.

    python -m s3prl_dd.run_downstream -m train -u ser_probe -k er-<step>.pt -d voxceleb1 \\
        -c downstream_configs/sid_probe.yaml -n exp \\
        -o "config.downstream_expert.datarc.file_path='VOX1_ROOT',,config.downstream_expert.datarc.meta_data='VOX1_ROOT/iden_split.txt'"

``sid_argv`` builds that command, ``run_sid`` runs it and ``read_sid_log`` reads the expert's
``log.log`` (SUPERB protocol: test accuracy at the best dev step). ``voxceleb_layout`` makes a
small VoxCeleb1-layout corpus of synthetic speakers for demos and tests.

Note: s3prl's voxceleb1 expert has a 1251-way output (VoxCeleb1's speakers) whatever the corpus,
and labels a file by its speaker directory ``id1XXXX`` (label = XXXX + 10000 - 10001)."""
from __future__ import annotations

import inspect
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import soundfile as sf

from ..protocol import SAMPLE_RATE
from ..utils import UserError, atomic_write_text

SID_CONFIG = Path(__file__).resolve().parents[2] / "downstream_configs" / "sid_probe.yaml"
_VOX = 71  # seed tag of the fallback layout's random streams


def _find_layout(out: Path) -> dict:
    metas = sorted(out.rglob("iden_split.txt"))
    if not metas:
        raise UserError(f"{out}: no iden_split.txt found (not a VoxCeleb1 layout)")
    meta = metas[0]
    first = next(line.split()[1] for line in meta.read_text().splitlines() if line.strip())
    for root in [meta.parent, out, *sorted(p for p in out.rglob("*") if p.is_dir())]:
        if list(root.glob("*/wav/" + first)):
            return {"file_path": str(root), "meta_data": str(meta)}
    raise UserError(f"{out}: cannot find the directory whose */wav/ holds {first}")


def _fallback_layout(out: Path, n_speakers: int, n_per_speaker: int, seed: int, duration) -> None:
    """VoxCeleb1 layout ``<out>/dev/wav/id1XXXX/<video>/<nnnnn>.wav`` + ``iden_split.txt``
    (1 = train, 2 = dev, 3 = test: each speaker's last utterance is test, the one before dev)."""
    from ..corpus import synth

    if n_per_speaker < 3:
        raise UserError("n_per_speaker must be >= 3 (train, dev and test utterances per speaker)")
    lines = []
    for s in range(n_speakers):
        spk = f"id{10001 + s}"
        rng = np.random.default_rng([seed, _VOX, s])
        voice = synth.make_voice(rng, "F" if s % 2 else "M")
        for k in range(n_per_speaker):
            video = f"v{k // 2:02d}{spk[-3:]}"
            channel = synth.make_channel(np.random.default_rng([seed, _VOX, s, k // 2]))
            wav = synth.render(rng, voice, synth.draw_style(rng, "neu"), channel, float(rng.uniform(*duration)))
            rel = f"{spk}/{video}/{k + 1:05d}.wav"
            path = out / "dev" / "wav" / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            sf.write(str(path), wav, SAMPLE_RATE, subtype="PCM_16")
            split = 3 if k == n_per_speaker - 1 else 2 if k == n_per_speaker - 2 else 1
            lines.append(f"{split} {rel}")
    atomic_write_text("\n".join(lines) + "\n", out / "iden_split.txt")


def voxceleb_layout(out_dir, n_speakers: int = 8, n_per_speaker: int = 6, seed: int = 0,
                    duration=(0.6, 1.0)) -> dict:
    """A small VoxCeleb1-layout corpus; returns ``{"file_path", "meta_data"}`` for the voxceleb1
    expert's datarc. Uses the corpus package's ``make_builtin_voxceleb`` when it exists (with the
    arguments it accepts), else writes the layout itself from the same speech synthesiser."""
    out = Path(out_dir).resolve()
    if (out / "iden_split.txt").is_file() or list(out.rglob("iden_split.txt")):
        return _find_layout(out)
    out.mkdir(parents=True, exist_ok=True)
    import s3prl_dd.corpus as corpus

    make = getattr(corpus, "make_builtin_voxceleb", None)
    if make is not None:
        wanted = {"n_speakers": n_speakers, "n_per_speaker": n_per_speaker, "seed": seed, "duration": duration}
        params = inspect.signature(make).parameters
        make(out, **{k: v for k, v in wanted.items() if k in params})
    else:
        _fallback_layout(out, n_speakers, n_per_speaker, seed, duration)
    return _find_layout(out)


def sid_argv(upstream: str, expdir, file_path, meta_data, ckpt=None, config=SID_CONFIG, overrides: str | None = None,
             mode: str = "train", device: str | None = None) -> list[str]:
    """Arguments of ``python -m s3prl_dd.run_downstream`` for the SID recipe."""
    over = (f"config.downstream_expert.datarc.file_path='{file_path}',,"
            f"config.downstream_expert.datarc.meta_data='{meta_data}'")
    if overrides:
        over += ",," + overrides
    argv = ["-m", mode, "-u", upstream, "-d", "voxceleb1", "-c", str(config), "-p", str(expdir), "-o", over]
    if ckpt:
        argv += ["-k", str(ckpt)]
    if device:
        argv += ["--device", device]
    return argv


def read_sid_log(expdir) -> dict:
    """Accuracies from the voxceleb1 expert's ``log.log``: dev and test per evaluated step, the
    best dev step, and the test accuracy at that step (SUPERB's reported number)."""
    log = Path(expdir) / "log.log"
    if not log.is_file():
        raise UserError(f"{log} not found: did the SID run evaluate at least once?")
    acc = {"dev": {}, "test": {}}
    for line in log.read_text().splitlines():
        m = re.match(r"(dev|test) at step (\d+): ([0-9.eE+-]+)", line.strip())
        if m:
            acc[m.group(1)][int(m.group(2))] = float(m.group(3))
    if not acc["dev"]:
        return {"dev": acc["dev"], "test": acc["test"], "best_dev_step": None, "dev_acc": None, "test_acc": None}
    best = max(sorted(acc["dev"]), key=lambda s: acc["dev"][s])  # first step reaching the max, as the expert
    return {"dev": acc["dev"], "test": acc["test"], "best_dev_step": best, "dev_acc": acc["dev"][best],
            "test_acc": acc["test"].get(best)}


def run_sid(upstream: str, expdir, file_path, meta_data, ckpt=None, config=SID_CONFIG, overrides: str | None = None,
            device: str = "cpu", timeout: float | None = None, env: dict | None = None) -> dict:
    """Run the SID recipe in a subprocess (s3prl's runner owns its process: argv, seeds, exit)
    and return ``read_sid_log`` of its experiment directory."""
    argv = sid_argv(upstream, expdir, file_path, meta_data, ckpt, config, overrides, device=device)
    r = subprocess.run([sys.executable, "-m", "s3prl_dd.run_downstream", *argv], capture_output=True, text=True,
                       timeout=timeout, env={**os.environ, **(env or {})})
    if r.returncode != 0:
        tail = (r.stderr or r.stdout).strip().splitlines()[-5:]
        raise UserError(f"SID run ({upstream}) failed with exit code {r.returncode}: " + " | ".join(tail))
    return read_sid_log(expdir)
