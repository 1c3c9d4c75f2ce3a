"""Classification metrics and the statistics the paper's tables use.

UAR (unweighted average recall) is the mean of per-class recalls over the classes that occur
in ``y_true``: a class absent from a test fold has no recall, and counting it as 0 (or 1) would
move the score by 1/C for a property of the fold, not of the model. Predictions of an absent
class still count, as errors on the true class."""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np


def _arrays(y_true, y_pred) -> tuple[np.ndarray, np.ndarray]:
    t = np.asarray(y_true, dtype=np.int64).ravel()
    p = np.asarray(y_pred, dtype=np.int64).ravel()
    if t.shape != p.shape:
        raise ValueError(f"y_true has {t.size} items, y_pred {p.size}")
    if t.size == 0:
        raise ValueError("no items to score")
    return t, p


def accuracy(y_true, y_pred) -> float:
    t, p = _arrays(y_true, y_pred)
    return float((t == p).mean())


def recalls(y_true, y_pred) -> dict[int, float]:
    """Recall of each class present in ``y_true``."""
    t, p = _arrays(y_true, y_pred)
    return {int(c): float((p[t == c] == c).mean()) for c in np.unique(t)}


def uar(y_true, y_pred) -> float:
    return float(np.mean(list(recalls(y_true, y_pred).values())))


def confusion_matrix(y_true, y_pred, n_classes: int | None = None) -> np.ndarray:
    """``m[i, j]`` = number of items of true class i predicted as j."""
    t, p = _arrays(y_true, y_pred)
    n = n_classes if n_classes is not None else int(max(t.max(), p.max())) + 1
    m = np.zeros((n, n), dtype=np.int64)
    np.add.at(m, (t, p), 1)
    return m


def mcnemar(y_true, pred_a, pred_b) -> dict:
    """McNemar's exact test of two classifiers on the same test items: a two-sided binomial test
    (p = 0.5) on the discordant pairs. ``b`` = items only A gets right, ``c`` = only B."""
    from scipy.stats import binomtest

    t, a = _arrays(y_true, pred_a)
    _, b_ = _arrays(y_true, pred_b)
    if b_.shape != a.shape:
        raise ValueError("the two prediction sets differ in length")
    ra, rb = a == t, b_ == t
    b = int((ra & ~rb).sum())
    c = int((~ra & rb).sum())
    p = 1.0 if b + c == 0 else float(binomtest(b, b + c, 0.5, alternative="two-sided").pvalue)
    return {"b": b, "c": c, "n_discordant": b + c, "p_value": p}


def paired_test(a: Sequence[float], b: Sequence[float], confidence: float = 0.95) -> dict:
    """Paired comparison of two methods over independent units (folds): the mean difference
    ``a - b``, its t-interval, the two-sided paired t-test p (the test the reports mark with)
    and the Wilcoxon signed-rank exact p for reference. With n = 5 folds Wilcoxon's smallest
    two-sided p is 2/32 = 0.0625, so it can never reach 0.05: that is why t is the marked one."""
    from scipy import stats

    d = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    if d.ndim != 1 or d.size != len(b):
        raise ValueError("paired_test needs two equal-length 1-d sequences")
    n = int(d.size)
    out = {"n": n, "mean_diff": float(d.mean()) if n else float("nan"), "t_p": None, "wilcoxon_p": None,
           "ci_low": None, "ci_high": None, "t": None}
    if n < 2:
        return out
    sd = float(d.std(ddof=1))
    half = float(stats.t.ppf(0.5 + confidence / 2, n - 1)) * sd / math.sqrt(n)
    out.update(ci_low=out["mean_diff"] - half, ci_high=out["mean_diff"] + half)
    if sd > 0:
        res = stats.ttest_1samp(d, 0.0)
        out.update(t=float(res.statistic), t_p=float(res.pvalue))
    else:  # every unit moved by the same amount: no spread to test against
        out.update(t_p=1.0 if out["mean_diff"] == 0 else 0.0)
    if np.any(d != 0):
        out["wilcoxon_p"] = float(stats.wilcoxon(d, zero_method="wilcox", alternative="two-sided").pvalue)
    return out


def summarize(values: Sequence[float]) -> dict:
    """Mean, sample standard deviation (ddof=1; NaN for one value) and count."""
    v = np.asarray(list(values), dtype=np.float64)
    if v.size == 0:
        raise ValueError("no values to summarise")
    std = float(v.std(ddof=1)) if v.size > 1 else float("nan")
    return {"mean": float(v.mean()), "std": std, "n": int(v.size)}


def mean_std(values: Sequence[float], digits: int = 1, scale: float = 1.0, show_n: bool = True) -> str:
    """"72.8 ± 6.8 (n=15)"; ``scale=100`` turns fractions into percent."""
    s = summarize([x * scale for x in values])
    text = f"{s['mean']:.{digits}f}"
    if not math.isnan(s["std"]):
        text += f" ± {s['std']:.{digits}f}"
    return text + (f" (n={s['n']})" if show_n else "")


def classification_report(y_true, y_pred, n_classes: int | None = None) -> dict:
    """Everything the tables need about one test run, JSON-ready."""
    return {"uar": uar(y_true, y_pred), "acc": accuracy(y_true, y_pred),
            "recalls": {str(k): v for k, v in recalls(y_true, y_pred).items()},
            "confusion": confusion_matrix(y_true, y_pred, n_classes).tolist()}
