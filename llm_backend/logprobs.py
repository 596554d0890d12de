"""Log-probabilities from a row of logits: the chosen token's and the k most likely."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt


def log_softmax_top(
    logits: npt.NDArray[np.float32], chosen: int, k: int
) -> tuple[float, list[tuple[int, float]]]:
    """``(logprob of chosen, [(token, logprob)] of the k most likely, best first)``."""
    peak = float(logits.max())
    log_norm = peak + float(np.log(np.exp(logits - peak, dtype=np.float64).sum()))
    chosen_lp = float(logits[chosen]) - log_norm
    if k <= 0:
        return chosen_lp, []
    top = np.argpartition(logits, -k)[-k:]
    top = top[np.argsort(logits[top])[::-1]]
    return chosen_lp, [(int(t), float(logits[t]) - log_norm) for t in top]


def log_softmax_rows(
    rows: npt.NDArray[np.float32], chosen: Sequence[int], k: int
) -> list[tuple[float, list[tuple[int, float]]]]:
    """:func:`log_softmax_top` for each row of ``rows`` and its ``chosen[i]``, vectorized."""
    peaks = rows.max(axis=1, keepdims=True)
    sums = np.exp(rows - peaks, dtype=np.float64).sum(axis=1)
    log_norms = peaks[:, 0].astype(np.float64) + np.log(sums)
    index = np.arange(len(rows))
    chosen_lps = rows[index, np.asarray(chosen)].astype(np.float64) - log_norms
    if k <= 0:
        return [(float(lp), []) for lp in chosen_lps]
    top = np.argpartition(rows, -k, axis=1)[:, -k:]
    out: list[tuple[float, list[tuple[int, float]]]] = []
    for i in range(len(rows)):
        best = top[i][np.argsort(rows[i, top[i]])[::-1]]
        out.append((float(chosen_lps[i]), [(int(t), float(rows[i, t]) - float(log_norms[i])) for t in best]))
    return out
