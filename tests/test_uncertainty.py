"""farense.uncertainty: percentile bootstrap intervals, seeded, for one mean and a paired difference."""

import numpy as np
import pytest

from farense.comparison import across_runs, compare
from farense.uncertainty import mean_ci, paired_difference, runs_difference, runs_mean_ci


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


def test_with_one_run_each_the_two_level_bootstrap_is_the_paired_one():
    rng = np.random.default_rng(3)
    a, b = rng.random(50) < 0.6, rng.random(50) < 0.4
    paired = paired_difference(a, b, seed=5, samples=2000)
    over_runs = runs_difference([a], [b], seed=5, samples=2000)
    assert over_runs["ci"] == paired["ci"] and over_runs["difference"] == paired["difference"]
    assert over_runs["runs"] == [1, 1]
    assert runs_mean_ci([a], seed=5, samples=2000) == mean_ci(a, seed=5, samples=2000)


def test_runs_that_disagree_widen_the_interval_and_runs_that_agree_do_not():
    rng = np.random.default_rng(0)
    draws = rng.random((3, 200))
    baseline = [rng.random(200) < 0.5]
    # per question right (1) or wrong (0): three runs that each get 70% right, or 90%, 60% and 30%
    agree = [d >= 0.3 for d in draws]
    disagree = [d >= share for d, share in zip(draws, (0.1, 0.4, 0.7))]
    width = {
        name: np.diff(runs_difference(runs, baseline, samples=4000)["ci"])[0]
        for name, runs in (("agree", agree), ("disagree", disagree))
    }
    one_run = np.diff(paired_difference(agree[0], baseline[0], samples=4000)["ci"])[0]
    assert width["disagree"] > 2 * width["agree"]  # the runs' spread (0.3 to 0.9) enters the interval
    assert width["agree"] < 1.3 * one_run  # runs that agree add little to the questions' own spread
    same = runs_difference([baseline[0], baseline[0]], baseline, samples=500)
    assert same["difference"] == 0.0 and same["ci"] == [0.0, 0.0]
    with pytest.raises(ValueError, match="differ in number"):
        runs_difference(baseline, [baseline[0][:10]])


def test_across_runs_groups_replicates_by_model_and_seed():
    def run(correct):  # four seen questions, each right or wrong
        return _eval([(f"q{i}", "seen_fact", c, float(c)) for i, c in enumerate(correct)])

    evals = {"lora": run([1, 1, 0, 0]), "qlora": run([1, 1, 1, 1]), "base": run([0, 0, 0, 0])}
    assert across_runs(evals, {}, first_seed=0) is None  # one run each: the paired comparison says it all
    replicates = {"qlora-seed2": run([0, 0, 0, 0]), "qlora-seed1": run([1, 1, 0, 0]), "lora-seed1": run([1, 1, 0, 0])}
    result = across_runs(evals, replicates, first_seed=0, samples=500)
    qlora = result["models"]["qlora"]
    assert qlora["seeds"] == [0, 1, 2] and qlora["seen_fact"]["fact_accuracy_runs"] == [1.0, 0.5, 0.0]
    assert qlora["seen_fact"]["fact_accuracy"] == 0.5 and qlora["seen_fact"]["fact_accuracy_sd"] == 0.5
    assert result["models"]["base"]["seeds"] == [0]
    lq = result["pairs"]["lora-qlora"]["seen_fact"]["fact_correct"]
    assert lq["runs"] == [2, 3] and lq["difference"] == 0.0 and lq["ci"][0] < 0 < lq["ci"][1]
    assert result["pairs"]["qlora-base"]["seen_fact"]["fact_correct"]["runs"] == [3, 1]
    with pytest.raises(ValueError, match="names no evaluated model"):
        across_runs(evals, {"mistral-seed1": run([1, 1, 1, 1])}, first_seed=0)
