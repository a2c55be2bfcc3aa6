"""Scores with their noise: per-prompt scores of an eval folder, bootstrap confidence intervals, an exact paired test.

    scores = row_scores("eval/gsm8k-sdft", "gsm8k", results["tasks"]["gsm8k"])   # {row id: score}
    result = paired([sdft_scores], [vanilla_scores])                             # sdft - vanilla
    result["difference"], result["ci"], result["within_noise"], result["exact"]

Two arms evaluated on the same rows are compared row by row: each row's
difference, the mean of those differences, and a percentile bootstrap over
the rows for its 95% confidence interval (the same resampled rows for both
arms, which is what makes it paired). A row evaluated with several samples
(`--samples N`) counts as the mean of its samples. An arm trained with several
seeds is a matrix of seeds x rows: the bootstrap then also resamples each
arm's seeds, so the interval holds the training noise as well as the prompts'.
When every score is 0 or 1 and each arm has one seed, McNemar's exact test (a
two-sided binomial test on the discordant rows) is given too; other scores
(similarity, drift, AlpacaEval's ties) get the bootstrap only. A difference is
within noise when its interval holds 0 or, where the exact test applies, when
that test does not reject at 5%. The bootstrap is seeded: the same inputs give
the same interval.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

RESAMPLES = 10_000
BOOTSTRAP_SEED = 0
LEVEL = 0.95
# Resamples drawn at once: 1,000 x 1,319 GSM8K rows is a 10 MB index array.
_CHUNK = 1_000


def row_scores(folder: str | Path, task: str, entry: dict) -> dict[object, float] | None:
    """{row id: score} from an eval folder's predictions/<task>.jsonl, each row the mean of its scored samples.

    Rows no sample could score are left out. None when the folder has no predictions for the task
    (results copied without them); a file that is not the eval's own format is a ValueError.
    """
    path = Path(folder) / str(entry.get("predictions") or f"predictions/{task}.jsonl")
    if not path.is_file():
        return None
    out = {}
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                values = [float(s) for s in record["scores"] if s is not None]
                key = record["id"]
            except (ValueError, KeyError, TypeError) as e:
                raise ValueError(f"{path}, line {number}: not a prediction row with an id and scores ({e})") from None
            if values:
                out[key] = sum(values) / len(values)
    return out


def matrix(per_seed: list[dict], ids: list) -> np.ndarray:
    """Seeds x rows: each seed's scores on `ids` (rows every seed scored)."""
    return np.array([[scores[i] for i in ids] for scores in per_seed], dtype=float)


def common_ids(*score_dicts: dict) -> list:
    """The row ids every one of the score dicts holds, in the first one's order."""
    first, rest = score_dicts[0], [set(d) for d in score_dicts[1:]]
    return [i for i in first if all(i in r for r in rest)]


def bootstrap_means(matrices: list[np.ndarray], *, resamples: int = RESAMPLES,
                    seed: int = BOOTSTRAP_SEED) -> np.ndarray:
    """Resampled means, one column per matrix (seeds x rows, all with the same rows): shape (resamples, matrices).

    Each resample draws the rows with replacement, the same rows for every matrix (paired), and each
    matrix's seeds with replacement (a matrix with one seed keeps it).
    """
    if resamples < 1:
        raise ValueError(f"resamples must be at least 1, not {resamples}")
    n = matrices[0].shape[1]
    if n == 0 or any(m.shape[1] != n for m in matrices):
        raise ValueError("bootstrap: the matrices must share a non-empty set of rows")
    rng = np.random.default_rng(seed)
    out = np.empty((resamples, len(matrices)))
    for start in range(0, resamples, _CHUNK):
        size = min(_CHUNK, resamples - start)
        rows = rng.integers(0, n, size=(size, n), dtype=np.int32)
        for j, m in enumerate(matrices):
            if m.shape[0] == 1:
                out[start:start + size, j] = m[0][rows].mean(axis=1)
            else:
                seeds = rng.integers(0, m.shape[0], size=(size, m.shape[0]))
                out[start:start + size, j] = m[seeds[:, :, None], rows[:, None, :]].mean(axis=(1, 2))
    return out


def interval(values: np.ndarray, level: float = LEVEL) -> tuple[float, float]:
    tail = 100 * (1 - level) / 2
    low, high = np.percentile(values, [tail, 100 - tail])
    return float(low), float(high)


def mean_ci(per_seed: list[dict], *, resamples: int = RESAMPLES, seed: int = BOOTSTRAP_SEED) -> dict | None:
    """One arm's mean score over the rows every seed scored, with its bootstrap 95% CI (None: no such row)."""
    ids = common_ids(*per_seed)
    if not ids:
        return None
    m = matrix(per_seed, ids)
    low, high = interval(bootstrap_means([m], resamples=resamples, seed=seed)[:, 0])
    return {"rows": len(ids), "mean": float(m.mean()), "ci": [low, high]}


def mcnemar_exact(a: np.ndarray, b: np.ndarray) -> dict:
    """McNemar's exact test of paired 0/1 scores: the rows only `a` got right, only `b` did, the two-sided p."""
    up = int(np.sum((a == 1) & (b == 0)))
    down = int(np.sum((a == 0) & (b == 1)))
    n = up + down
    # Under no difference each discordant row is a fair coin: P(X <= min) doubled, in exact integers.
    tail = sum(math.comb(n, k) for k in range(min(up, down) + 1))
    p = min(1.0, 2 * tail / 2 ** n) if n else 1.0
    return {"up": up, "down": down, "p": p}


def is_binary(m: np.ndarray) -> bool:
    return bool(np.all((m == 0) | (m == 1)))


def paired(a_seeds: list[dict], b_seeds: list[dict], *, resamples: int = RESAMPLES,
           seed: int = BOOTSTRAP_SEED) -> dict | None:
    """Arm a minus arm b over the rows both scored (every seed of each): the mean difference, its bootstrap 95% CI,
    McNemar's exact test where it applies (else None), and `within_noise`: the CI holds 0, or the exact test's
    p is at least 0.05.

    `a_seeds`, `b_seeds`: one {row id: score} per training seed of the arm. None when no row is shared.
    """
    ids = common_ids(*a_seeds, *b_seeds)
    if not ids:
        return None
    a, b = matrix(a_seeds, ids), matrix(b_seeds, ids)
    if a.shape[0] == b.shape[0] == 1:  # the mean of resampled differences: one draw instead of two
        low, high = interval(bootstrap_means([a - b], resamples=resamples, seed=seed)[:, 0])
    else:
        means = bootstrap_means([a, b], resamples=resamples, seed=seed)
        low, high = interval(means[:, 0] - means[:, 1])
    exact = None
    if a.shape[0] == b.shape[0] == 1 and is_binary(a) and is_binary(b):
        exact = mcnemar_exact(a[0], b[0])
    # Within noise when the interval holds 0, or when the exact test does not reject at the same level: with
    # few discordant rows (5 all one way: p = 0.0625) the percentile interval can miss 0 while the test does not.
    within = low <= 0.0 <= high or (exact is not None and exact["p"] >= 1 - LEVEL)
    return {"rows": len(ids), "difference": float(a.mean() - b.mean()), "ci": [low, high],
            "within_noise": within, "exact": exact}
