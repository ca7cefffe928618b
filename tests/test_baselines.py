"""Descriptor-only baselines: a pipeline of DescriptorTransform and a regressor, fitted on raw descriptor frames."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.ensemble import RandomForestRegressor

from matgl_hybrid.descriptors import DescriptorTransform
from matgl_hybrid.training.baselines import descriptor_forest, descriptor_mlp


@pytest.fixture
def frames() -> tuple[pd.DataFrame, np.ndarray, pd.DataFrame]:
    rng = np.random.default_rng(0)
    x = pd.DataFrame(rng.normal(size=(40, 5)) * [1, 10, 100, 0.1, 1], columns=[f"d{i}" for i in range(5)])
    x.iloc[3, 1] = np.nan  # missing values are the transform's to impute
    x.iloc[7, 4] = np.inf
    y = x["d0"].fillna(0).to_numpy() + 0.01 * x["d2"].to_numpy()
    return x.iloc[:30], y[:30], x.iloc[30:]


def test_forest_is_the_transform_then_a_seeded_forest(frames):
    train, y, test = frames
    model = descriptor_forest(seed=3, n_estimators=20, n_jobs=1).fit(train, y)
    transform = DescriptorTransform().fit(train)
    by_hand = RandomForestRegressor(n_estimators=20, random_state=3).fit(transform.transform(train), y)
    np.testing.assert_array_equal(model.predict(test), by_hand.predict(transform.transform(test)))
    assert model.named_steps["forest"].n_estimators == 20
    other = descriptor_forest(seed=4, n_estimators=20, n_jobs=1).fit(train, y)
    assert not np.array_equal(other.predict(test), model.predict(test))  # the seed is used


def test_imputation_is_fitted_on_training_rows_only(frames):
    train, y, test = frames
    model = descriptor_forest(n_estimators=5, n_jobs=1).fit(train, y)
    step = model.named_steps["descriptors"]
    np.testing.assert_allclose(step.median_, np.nanmedian(train.replace(np.inf, np.nan).to_numpy(), axis=0))
    assert np.isfinite(model.predict(test.assign(d1=np.nan))).all()


def test_mlp_pipeline_predicts_and_clones(frames):
    train, y, test = frames
    model = descriptor_mlp(seed=0, hidden=(8,), max_iter=50)
    fresh = clone(model)
    assert fresh.get_params()["mlp__hidden_layer_sizes"] == (8,)
    predicted = model.fit(train, y).predict(test)
    assert model.named_steps["mlp"].early_stopping
    assert predicted.shape == (len(test),)
    assert np.isfinite(predicted).all()
