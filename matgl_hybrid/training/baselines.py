"""Descriptor-only baselines: scikit-learn pipelines of :class:`DescriptorTransform` and a regressor.

The models the benchmarks compare the hybrid with (Matbench's usual "descriptors + random forest" and an MLP on the
same inputs): each takes a descriptor frame (``featurize(...)``, NaN allowed) and imputes and standardizes it on
the training rows only, inside the pipeline, so ``fit`` / ``predict`` on raw frames is leak-free.

    model = descriptor_forest(seed=0).fit(featurize(train.structures, "gong28+composition"), train.targets)
    predicted = model.predict(featurize(test.structures, "gong28+composition"))
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, ClassVar

import numpy as np
import pandas as pd
from sklearn.ensemble import RandomForestRegressor
from sklearn.neural_network import MLPRegressor
from sklearn.pipeline import Pipeline

from matgl_hybrid.descriptors import DescriptorTransform


def descriptor_forest(*, seed: int = 0, n_estimators: int = 500, n_jobs: int | None = -1) -> Pipeline:
    """``DescriptorTransform`` then ``RandomForestRegressor(n_estimators, random_state=seed)`` (scikit-learn's
    other defaults)."""
    forest = RandomForestRegressor(n_estimators=n_estimators, n_jobs=n_jobs, random_state=seed)
    return Pipeline([("descriptors", DescriptorTransform()), ("forest", forest)])


def descriptor_mlp(*, seed: int = 0, hidden: tuple[int, ...] = (256, 128), max_iter: int = 1000) -> Pipeline:
    """``DescriptorTransform`` then an ``MLPRegressor`` (ReLU, Adam, early stopping on 10 % of the training rows)."""
    mlp = MLPRegressor(hidden_layer_sizes=hidden, early_stopping=True, max_iter=max_iter, random_state=seed)
    return Pipeline([("descriptors", DescriptorTransform()), ("mlp", mlp)])


@dataclass(frozen=True)
class DescriptorForest:
    """The descriptors random forest as a selection candidate: :func:`descriptor_forest` on ``descriptor_set``,
    fitted on standardized targets (the guard of :func:`~matgl_hybrid.training.selection.select`: a graph network
    that scores worse than it on inner data is not shipped silently).

    Attributes:
        descriptor_set: the descriptor set it reads (the graph candidates' own, so both see the same inputs).
        n_estimators: trees.
        seed: the forest's ``random_state``.
        n_jobs: cores the forest trains on (scikit-learn's; -1: all). Where it computes, not what: the same
            seed gives the same forest on any number, and fingerprints leave it out (as ``TrainSpec.n_jobs``).
    """

    descriptor_set: str = "gong28+composition"
    n_estimators: int = 500
    seed: int = 0
    n_jobs: int = 1

    #: The ``model`` value that marks a forest in a candidates file.
    MODEL: ClassVar[str] = "random_forest"

    def to_dict(self) -> dict[str, Any]:
        """``{"model": "random_forest", "descriptor_set", "n_estimators", "seed", "n_jobs"}`` (a candidates file's
        entry)."""
        return {"model": self.MODEL, **asdict(self)}

    def fit_predict(self, train: pd.DataFrame, targets: np.ndarray, test: pd.DataFrame) -> np.ndarray:
        """Fit on descriptor rows ``train`` (n_train, d) and ``targets`` (n_train,); predict ``test``: (n_test,)."""
        mean, std = float(np.mean(targets)), float(np.std(targets)) or 1.0
        model = descriptor_forest(seed=self.seed, n_estimators=self.n_estimators, n_jobs=self.n_jobs)
        model.fit(train, (targets - mean) / std)
        return model.predict(test) * std + mean
