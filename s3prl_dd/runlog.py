"""One run's scalars: ``metrics.jsonl`` + tensorboard events in the run directory.

Shared by the ER and GAN trainers. On resume from step s, records after s are dropped from both
(tensorboard's ``purge_step``), so the curves continue instead of doubling back. With no run
directory every call is a no-op, so callers need no branches."""
from __future__ import annotations

import json
from pathlib import Path

from .utils import append_jsonl, atomic_write_text


def read_metrics(path) -> list[dict]:
    """The records of a ``metrics.jsonl``, in the order they were written."""
    return [json.loads(ln) for ln in Path(path).read_text().splitlines() if ln.strip()]


def gan_curves(run_dir) -> dict:
    """A GAN run's convergence as [step, value] pairs: the quick evaluation's dev UAR and the
    critic's Wasserstein estimate. Result JSONs keep these, so a report that quotes a curve needs
    no run directory."""
    path = Path(run_dir) / "metrics.jsonl"
    recs = read_metrics(path) if path.is_file() else []   # a run exported without its log has no curve
    return {"dev_curve": [[r["step"], r["dev_uar"]] for r in recs if r.get("split") == "eval" and "dev_uar" in r],
            "wasserstein_curve": [[r["step"], r["critic/wasserstein"]] for r in recs if "critic/wasserstein" in r]}


class RunLog:
    def __init__(self, run_dir, resume_step: int | None = None, flush: bool = False):
        self.dir, self.tb, self.flush = (Path(run_dir) if run_dir is not None else None), None, flush
        if self.dir is None:
            return
        from torch.utils.tensorboard import SummaryWriter

        self.path = self.dir / "metrics.jsonl"
        if resume_step is not None and self.path.is_file():
            keep = [ln for ln in self.path.read_text().splitlines()
                    if ln.strip() and json.loads(ln).get("step", 0) <= resume_step]
            atomic_write_text("".join(ln + "\n" for ln in keep), self.path)
        self.tb = SummaryWriter(str(self.dir), purge_step=None if resume_step is None else resume_step + 1)

    def __call__(self, step: int, split: str, values: dict) -> None:
        if self.dir is None:
            return
        append_jsonl({"step": step, "split": split, **values}, self.path)
        for k, v in values.items():
            if isinstance(v, (int, float)) and v is not None:
                self.tb.add_scalar(f"{split}/{k}", v, step)
        if self.flush:
            self.tb.flush()

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()
