"""farense.uncertainty: percentile bootstrap intervals, seeded, for one mean and a paired difference."""

import numpy as np
import pytest

from farense.comparison import compare
from farense.uncertainty import mean_ci, paired_difference


def test_a_constant_has_no_spread_and_nothing_has_no_interval():
    assert mean_ci([1.0] * 30) == [1.0, 1.0]
    assert mean_ci([]) is None and paired_difference([], []) is None


def test_a_proportion_matches_its_normal_approximation():
    values = [1.0] * 50 + [0.0] * 50  # p = 0.5, n = 100: standard error 0.05, 95% half-width 0.098
    low, high = mean_ci(values, seed=1)
    assert low == pytest.approx(0.5 - 0.098, abs=0.012) and high == pytest.approx(0.5 + 0.098, abs=0.012)
    small = mean_ci([1.0] * 5 + [0.0] * 5, seed=1)
    assert small[1] - small[0] > 2 * (high - low)  # ten questions: a much wider interval


def test_seeded_intervals_repeat_and_the_seed_matters():
    values = np.random.default_rng(0).random(40)
    assert mean_ci(values, seed=3) == mean_ci(values, seed=3)
    assert mean_ci(values, seed=3) != mean_ci(values, seed=4)


def test_paired_differences():
    a = np.random.default_rng(1).integers(0, 2, 60).astype(float)
    same = paired_difference(a, a)
    assert same == {"difference": 0.0, "ci": [0.0, 0.0], "excludes_zero": False, "questions": 60}
    better = paired_difference(np.ones(60), a)
    assert (
        better["difference"] == pytest.approx(1 - a.mean(), abs=1e-4)
        and better["excludes_zero"]
        and better["ci"][0] > 0
    )
    # one model right on 6 more of 60 questions, the rest shared: pairing sees it; two separate intervals overlap
    b = a.copy()
    b[np.flatnonzero(a == 0)[:6]] = 1.0
    paired = paired_difference(b, a)
    assert paired["difference"] == pytest.approx(0.1) and paired["excludes_zero"]
    ci_a, ci_b = mean_ci(a), mean_ci(b)
    assert ci_b[0] < ci_a[1]  # unpaired, they overlap
    with pytest.raises(ValueError, match="differ in number"):
        paired_difference([1.0, 0.0], [1.0])


def _eval(rows):
    return {
        "answers": {
            "per_question": [
                {"id": i, "support": s, "fact_correct": fc, "f1": f1, "exact_match": 0.0} for i, s, fc, f1 in rows
            ]
        }
    }


def test_comparison_pairs_the_same_questions_per_label():
    lora = _eval(
        [
            ("q1", "seen_fact", True, 1.0),
            ("q2", "seen_fact", True, 0.8),
            ("q3", "unseen_fact", False, 0.2),
            ("q4", "seen_fact", None, 0.5),
        ]
    )
    qlora = _eval(
        [
            ("q1", "seen_fact", True, 0.9),
            ("q2", "seen_fact", False, 0.4),
            ("q3", "unseen_fact", False, 0.1),
            ("q4", "seen_fact", None, 0.5),
        ]
    )
    result = compare({"lora": lora, "qlora": qlora}, samples=1000)
    assert list(result) == ["lora-qlora"]  # the other pairs need models not evaluated
    seen = result["lora-qlora"]["seen_fact"]
    assert (
        seen["fact_correct"]["questions"] == 2 and seen["fact_correct"]["difference"] == 0.5
    )  # q4 has no facts to check
    assert seen["f1"]["questions"] == 3 and seen["f1"]["difference"] == pytest.approx((0.1 + 0.4 + 0.0) / 3, abs=1e-4)
    assert result["lora-qlora"]["unseen_fact"]["fact_correct"]["difference"] == 0.0
    assert result["lora-qlora"]["overall"]["f1"]["questions"] == 4
