"""sdft_train.stats: the exact paired test on known cases, the bootstrap's width, pairing and seeds, row scores."""

import json
import math

import numpy as np
import pytest

from sdft_train import stats


@pytest.mark.parametrize("up, down, p", [
    (6, 0, 2 / 2 ** 6),                                   # all six discordant rows one way
    (10, 2, 2 * (1 + 12 + 66) / 2 ** 12),                 # 2 * P(X <= 2), X ~ Binomial(12, 1/2)
    (3, 3, 1.0),
    (0, 0, 1.0),                                          # no discordant row: no evidence either way
])
def test_mcnemar_exact_is_the_two_sided_binomial_on_the_discordant_rows(up, down, p):
    a = np.array([1] * up + [0] * down + [1, 0, 1])
    b = np.array([0] * up + [1] * down + [1, 0, 1])       # three concordant rows, which do not count
    result = stats.mcnemar_exact(a, b)
    assert (result["up"], result["down"]) == (up, down)
    assert result["p"] == pytest.approx(p, rel=1e-12)


def test_mcnemar_exact_stays_exact_on_thousands_of_rows():
    a, b = np.array([1] * 1100 + [0] * 1000), np.array([0] * 1100 + [1] * 1000)
    p = stats.mcnemar_exact(a, b)["p"]
    # The normal approximation with continuity correction is close here; the exact value is a number, not 0 or nan.
    z = (abs(1100 - 1000) - 1) / math.sqrt(2100)
    assert 0 < p < 1 and p == pytest.approx(math.erfc(z / math.sqrt(2)), rel=0.02)


def test_the_bootstrap_interval_has_the_width_of_the_normal_one_and_is_seeded():
    rng = np.random.default_rng(5)
    n = 400
    a = {i: float(v) for i, v in enumerate(rng.normal(0.3, 1.0, n))}
    b = {i: 0.0 for i in range(n)}
    result = stats.paired([a], [b])
    low, high = result["ci"]
    sd = np.std(list(a.values()), ddof=1)
    assert (high - low) / 2 == pytest.approx(1.96 * sd / math.sqrt(n), rel=0.1)
    assert low < result["difference"] < high
    assert stats.paired([a], [b])["ci"] == result["ci"]                 # the same seed, the same interval
    assert stats.paired([a], [b], seed=1)["ci"] != result["ci"]


def test_the_interval_is_paired():
    # Two arms that differ by a small shift on each row, over rows of very different difficulty: paired, the
    # interval is about the shift's noise; resampling each arm's rows apart would make it ten times wider.
    rng = np.random.default_rng(0)
    base = rng.normal(0, 1.0, 300)
    a = {i: float(v + 0.1 + rng.normal(0, 0.05)) for i, v in enumerate(base)}
    b = {i: float(v) for i, v in enumerate(base)}
    low, high = stats.paired([a], [b])["ci"]
    unpaired_width = 2 * 1.96 * math.sqrt(2 * np.var(base) / 300)
    assert low > 0 and high - low < unpaired_width / 5


def test_an_arm_with_several_seeds_carries_their_noise():
    # Three seeds that are each off by a constant on every row: averaging them per row first hides that;
    # resampling the seeds shows it.
    rng = np.random.default_rng(1)
    rows = rng.random(200) < 0.5
    seeds = [{i: float(r) + offset for i, r in enumerate(rows)} for offset in (-0.1, 0.0, 0.1)]
    vanilla = [{i: float(r) for i, r in enumerate(rows)}]
    averaged = [{i: sum(s[i] for s in seeds) / 3 for i in range(200)}]
    wide, narrow = stats.paired(seeds, vanilla), stats.paired(averaged, vanilla)
    assert wide["difference"] == pytest.approx(narrow["difference"]) == pytest.approx(0.0, abs=1e-12)
    assert (wide["ci"][1] - wide["ci"][0]) > 10 * (narrow["ci"][1] - narrow["ci"][0] + 1e-9)
    assert wide["exact"] is None                                      # several seeds: the bootstrap only


def test_the_exact_test_is_only_for_0_1_scores():
    ones = [{0: 1.0, 1: 0.0, 2: 1.0}]
    assert stats.paired(ones, [{0: 0.0, 1: 0.0, 2: 1.0}])["exact"] == {"up": 1, "down": 0, "p": 1.0}
    assert stats.paired([{0: 0.5, 1: 0.0, 2: 1.0}], [{0: 0.0, 1: 0.0, 2: 1.0}])["exact"] is None
    assert stats.paired([{0: 0.9, 1: 0.2}], [{0: 0.1, 1: 0.3}])["exact"] is None
    assert stats.paired([{0: 1.0}], [{1: 1.0}]) is None               # no row in common


def test_row_scores_average_samples_and_skip_unscored_rows(tmp_path):
    folder = tmp_path / "eval"
    (folder / "predictions").mkdir(parents=True)
    rows = [{"id": 0, "scores": [1.0, 0.0]}, {"id": 1, "scores": [None, 1.0]}, {"id": 2, "scores": [None, None]}]
    (folder / "predictions" / "gsm8k.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    entry = {"predictions": "predictions/gsm8k.jsonl"}
    assert stats.row_scores(folder, "gsm8k", entry) == {0: 0.5, 1: 1.0}
    assert stats.row_scores(folder, "advbench", {}) is None
    (folder / "predictions" / "gsm8k.jsonl").write_text('{"id": 0, "scores": [1.0]}\n{"id": 1}\n')
    with pytest.raises(ValueError, match=r"gsm8k.jsonl, line 2: not a prediction row"):
        stats.row_scores(folder, "gsm8k", entry)
