"""Log-probabilities from a row of logits: the chosen token's and the k most likely."""

from __future__ import annotations

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
