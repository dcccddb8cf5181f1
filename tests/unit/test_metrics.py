"""Our AUC must agree with scikit-learn's, ties included; slices behave at their edges."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import log_loss, roc_auc_score

from cscnn.training.metrics import auc, logloss, summarize


@pytest.mark.parametrize("seed", range(5))
def test_auc_matches_sklearn(seed: int) -> None:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, 500)
    scores = np.round(rng.random(500) + 0.3 * labels, 1)  # rounding makes many ties
    assert auc(labels, scores) == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)


def test_logloss_matches_sklearn() -> None:
    rng = np.random.default_rng(0)
    labels, probs = rng.integers(0, 2, 300), rng.random(300)
    assert logloss(labels, probs) == pytest.approx(log_loss(labels, probs), rel=1e-9)


def test_auc_undefined_for_one_class() -> None:
    assert auc(np.ones(4), np.arange(4.0)) is None


def test_summary_slices() -> None:
    labels = np.array([0, 1, 0, 1, 1, 1])
    probs = np.array([0.1, 0.9, 0.2, 0.8, 0.3, 0.4])
    categories = np.array(["a", "a", "a", "a", "b", "b"], dtype=object)
    cold = np.array([False, False, True, True, False, False])
    result = summarize(labels, probs, categories, cold)
    assert result["per_category_auc"] == {"a": 1.0, "b": None}  # b has only clicks
    assert result["cold_start_auc"] == 1.0 and result["n_cold_start"] == 2
    assert result["n"] == 6 and result["ctr"] == pytest.approx(4 / 6)
