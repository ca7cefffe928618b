"""Descriptor-only baselines: scikit-learn pipelines of :class:`DescriptorTransform` and a regressor.

The models the benchmarks compare the hybrid with (Matbench's usual "descriptors + random forest" and an MLP on the
same inputs): each takes a descriptor frame (``featurize(...)``, NaN allowed) and imputes and standardizes it on
the training rows only, inside the pipeline, so ``fit`` / ``predict`` on raw frames is leak-free.

    model = descriptor_forest(seed=0).fit(featurize(train.structures, "gong28+composition"), train.targets)
    predicted = model.predict(featurize(test.structures, "gong28+composition"))
"""

from __future__ import annotations

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
