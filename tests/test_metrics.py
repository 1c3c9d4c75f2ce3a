import math

import numpy as np
import pytest

from s3prl_dd import metrics

Y_TRUE = [0, 0, 0, 1, 1, 2]
Y_PRED = [0, 0, 1, 1, 0, 2]


def test_accuracy_and_uar_by_hand():
    assert metrics.accuracy(Y_TRUE, Y_PRED) == pytest.approx(4 / 6)
    # recalls 2/3, 1/2, 1/1
    assert metrics.uar(Y_TRUE, Y_PRED) == pytest.approx((2 / 3 + 1 / 2 + 1) / 3)
    assert metrics.recalls(Y_TRUE, Y_PRED) == pytest.approx({0: 2 / 3, 1: 0.5, 2: 1.0})


def test_uar_ignores_classes_absent_from_y_true_but_counts_their_predictions_as_errors():
    # class 3 never occurs in y_true; predicting it costs class 0 half its recall
    assert metrics.uar([0, 0, 1, 1], [0, 3, 1, 1]) == pytest.approx((0.5 + 1.0) / 2)


def test_uar_differs_from_accuracy_on_imbalanced_data():
    y = [0] * 9 + [1]
    p = [0] * 10  # majority-class predictor
    assert metrics.accuracy(y, p) == pytest.approx(0.9)
    assert metrics.uar(y, p) == pytest.approx(0.5)


def test_confusion_matrix_by_hand():
    m = metrics.confusion_matrix(Y_TRUE, Y_PRED, n_classes=4)
    assert m.tolist() == [[2, 1, 0, 0], [1, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 0]]
    assert metrics.confusion_matrix(Y_TRUE, Y_PRED).shape == (3, 3)


def test_mcnemar_exact_by_hand():
    y = [1] * 10
    a = [1] * 8 + [0] * 2   # A right on items 0..7
    b = [1] * 2 + [0] * 8   # B right on items 0..1
    r = metrics.mcnemar(y, a, b)
    assert (r["b"], r["c"], r["n_discordant"]) == (6, 0, 6)
    assert r["p_value"] == pytest.approx(2 * 0.5 ** 6)  # two-sided binomial, 6 of 6
    # symmetric in the two models
    assert metrics.mcnemar(y, b, a)["p_value"] == pytest.approx(r["p_value"])
    # 3 vs 1 discordant: P(X<=1)+P(X>=3) for Bin(4, .5) = (1+4+4+1)/16
    a2 = [1, 1, 1, 0, 1, 1]
    b2 = [0, 0, 0, 1, 1, 1]
    r2 = metrics.mcnemar([1] * 6, a2, b2)
    assert (r2["b"], r2["c"]) == (3, 1)
    assert r2["p_value"] == pytest.approx(10 / 16)


def test_mcnemar_without_discordant_pairs_is_one():
    assert metrics.mcnemar([0, 1], [0, 1], [0, 1])["p_value"] == 1.0


def test_mean_std_sample_std_and_n():
    assert metrics.mean_std([70, 75, 80]) == "75.0 ± 5.0 (n=3)"
    assert metrics.mean_std([0.70, 0.75, 0.80], scale=100, digits=2) == "75.00 ± 5.00 (n=3)"
    s = metrics.summarize([1.0])
    assert s["n"] == 1 and math.isnan(s["std"])
    assert metrics.mean_std([72.8]) == "72.8 (n=1)"


def test_length_mismatch_and_empty_are_errors():
    with pytest.raises(ValueError):
        metrics.uar([0, 1], [0])
    with pytest.raises(ValueError):
        metrics.accuracy([], [])


def test_classification_report_is_json_ready():
    import json

    r = metrics.classification_report(np.array(Y_TRUE), np.array(Y_PRED), n_classes=3)
    json.dumps(r)
    assert r["confusion"][0] == [2, 1, 0]


def test_paired_test_by_hand():
    """d = 1..5: mean 3, sd sqrt(2.5), t = 3 / (sqrt(2.5) / sqrt(5)) = 4.2426 on 4 df, two-sided
    p = 0.013236; 95 % interval 3 ± 2.776445 * 0.707107 = [1.036757, 4.963243]; Wilcoxon exact
    p = 2 / 2^5 = 0.0625 (all five signs positive)."""
    r = metrics.paired_test([1, 2, 3, 4, 5], [0, 0, 0, 0, 0])
    assert r["n"] == 5 and r["mean_diff"] == pytest.approx(3.0)
    assert r["t"] == pytest.approx(4.242641, abs=1e-6) and r["t_p"] == pytest.approx(0.013236, abs=1e-6)
    assert (r["ci_low"], r["ci_high"]) == (pytest.approx(1.036757, abs=1e-6), pytest.approx(4.963243, abs=1e-6))
    assert r["wilcoxon_p"] == pytest.approx(0.0625)
    # the sign of the difference follows a - b; a constant shift has no spread: p 0 (or 1 if none)
    assert metrics.paired_test([0, 0, 0], [1, 2, 3])["mean_diff"] == pytest.approx(-2.0)
    assert metrics.paired_test([2, 3, 4], [1, 2, 3])["t_p"] == 0.0
    assert metrics.paired_test([1, 2], [1, 2])["t_p"] == 1.0 and metrics.paired_test([1, 2], [1, 2])["wilcoxon_p"] is None
    with pytest.raises(ValueError):
        metrics.paired_test([1, 2, 3], [1, 2])
