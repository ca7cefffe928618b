"""The selection engine (``matgl_hybrid.training.select``): the better candidate on inner data wins, a killed selection
resumes from its finished inner folds, a changed candidate is refused, and ``train`` / ``cv`` use it."""

import dataclasses
import json
import warnings

import numpy as np
import pandas as pd
import pytest
from conftest import DEMO_DATA, TINY, write_small_records
from lightning.pytorch.callbacks import Callback
from sklearn.metrics import roc_auc_score

from matgl_hybrid import data
from matgl_hybrid.cli import main
from matgl_hybrid.data.splits import kfold_splits
from matgl_hybrid.errors import TrainingInterrupted
from matgl_hybrid.evaluation import run_cv
from matgl_hybrid.fingerprint import FingerprintMismatch
from matgl_hybrid.models import HybridEnsemble, HybridModel
from matgl_hybrid.training import DescriptorForest, InnerKFold, TrainSpec, ValidationSplit, select
from matgl_hybrid.training import selection as selection_module
from matgl_hybrid.training.candidates import default_candidates
from matgl_hybrid.training.fit import FitResult
from matgl_hybrid.training.selection import Selection


@pytest.fixture(scope="module")
def atoms_per_cell() -> data.StructureData:
    """24 de Jong structures whose target is their number of atoms: the ``lattice`` set holds it, ``composition``
    (fractions only) does not, so a forest on the first must beat one on the second."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        found = data.load(DEMO_DATA / "de_jong_2015_elasticity.json.gz", target="K_VRH", limit=24)
    found.targets = np.array([float(len(s)) for s in found.structures])
    found.target_name = "n_atoms"
    return found


class EpochCounter(Callback):
    """Counts the training epochs run (a restored finished run runs none)."""

    def __init__(self):
        self.epochs = 0

    def on_train_epoch_end(self, trainer, pl_module):
        self.epochs += 1


def test_the_candidate_better_on_inner_data_is_chosen_and_its_score_is_its_inner_mae(atoms_per_cell):
    candidates = {
        "blind": DescriptorForest("composition", n_estimators=50),
        "informed": DescriptorForest("lattice", n_estimators=50),
        "gnn": TrainSpec(max_epochs=1, lr=1e-6, **TINY),
    }
    chosen = select(atoms_per_cell, candidates, ValidationSplit(0.25, 0), progress=False)
    scores = chosen.scores
    for name, records in chosen.folds.items():
        (record,) = records
        y, p = np.array(record["y_true"]), np.array(record["y_pred"])
        assert scores[name] == pytest.approx(np.mean(np.abs(y - p)))  # the score is the MAE of what was scored
        _, scored_idx = ValidationSplit(0.25, 0).splits(atoms_per_cell)[0]
        assert record["ids"] == [atoms_per_cell.ids[i] for i in scored_idx]  # the inner split's scored quarter
        assert record["n_train"] + len(record["ids"]) == len(atoms_per_cell)
    (fit,) = chosen.fits  # the graph network never trained on what it was scored on (its early-stopping split)
    scored = chosen.folds["gnn"][0]["ids"]
    assert set(scored).isdisjoint(fit.train_ids)
    assert sorted(fit.val_ids) == sorted(scored)
    assert len(fit.train_ids) == chosen.folds["gnn"][0]["n_train"]
    assert scores["informed"] < scores["blind"]
    assert chosen.chosen == "informed" == min(scores, key=scores.get)
    # The model is the best graph network; a descriptor-only winner is said plainly, not hidden.
    assert chosen.model_name == "gnn"
    assert isinstance(chosen.model, HybridModel)
    assert chosen.guard_won
    assert chosen.summary().startswith(f"chose informed: inner MAE {scores['informed']:.4g} vs ")
    assert "WARNING" in chosen.summary()
    assert "gnn" in chosen.summary()
    record = chosen.record()
    assert record["chosen"] == "informed"
    assert record["model"] == "gnn"
    assert record["candidates"]["informed"] == {"model": "random_forest", "descriptor_set": "lattice",
                                                "n_estimators": 50, "seed": 0, "n_jobs": 1}  # fmt: skip
    json.dumps(record)  # JSON values, for training.json


def test_inner_kfold_scores_out_of_fold_over_all_data_and_ensembles_the_k_models(atoms_per_cell):
    candidates = {"gnn": TrainSpec(max_epochs=1, **TINY), "forest": DescriptorForest("lattice", n_estimators=20)}
    chosen = select(atoms_per_cell, candidates, InnerKFold(3, seed=1), progress=False)
    for records in chosen.folds.values():
        scored = [i for r in records for i in r["ids"]]
        assert sorted(scored) == sorted(atoms_per_cell.ids)  # every structure scored once, out of fold
    assert isinstance(chosen.model, HybridEnsemble)
    assert len(chosen.model.members) == 3
    assert next(f.model.element_types for f in chosen.fits) == chosen.fits[2].model.element_types  # all data's
    assert [m["same"] for m in chosen.members()] == [True] * 3  # the members are the fits scored


def test_members_say_where_a_retrained_model_differs_from_the_fit_that_was_scored():
    """A member trained again after its checkpoint was lost can differ from the scored fit: the record says so."""
    scored = [{"mae": 1.0, "seconds": 1.0, "ids": ["a"], "y_true": [0.0], "y_pred": [1.0], "best_val_mae": v,
               "best_epoch": e} for v, e in ((0.5, 3), (0.7, 9))]  # fmt: skip
    kept = [FitResult(model=None, best_val_mae=v, best_epoch=e, epochs_run=10, train_ids=[], val_ids=[])
            for v, e in ((0.5, 3), (0.8, 4))]  # fmt: skip
    gnn = TrainSpec(**TINY)
    chosen = Selection(InnerKFold(2), {"gnn": gnn}, {"gnn": scored}, model_name="gnn", fits=kept)
    assert chosen.members() == [
        {"scored_best_val_mae": 0.5, "scored_best_epoch": 3, "best_val_mae": 0.5, "best_epoch": 3, "same": True},
        {"scored_best_val_mae": 0.7, "scored_best_epoch": 9, "best_val_mae": 0.8, "best_epoch": 4, "same": False},
    ]
    assert chosen.record()["members"] == chosen.members()
    assert Selection(InnerKFold(2), {"gnn": gnn}, {"gnn": scored}).members() == []  # no graph network chosen


def test_a_killed_selection_resumes_from_its_finished_inner_folds_and_refuses_a_changed_candidate(
    atoms_per_cell, tmp_path, monkeypatch
):
    candidates = {
        "extensive": TrainSpec(max_epochs=2, **TINY),
        "mean": TrainSpec(max_epochs=2, **{**TINY, "readout": "mean"}),
    }
    scheme = InnerKFold(2)
    real_fit, calls = selection_module.fit, []

    def killed_on_third(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise TrainingInterrupted("SIGTERM stopped training after 0 finished epochs")
        return real_fit(*args, **kwargs)

    monkeypatch.setattr(selection_module, "fit", killed_on_third)
    with pytest.raises(TrainingInterrupted):
        select(atoms_per_cell, candidates, scheme, directory=tmp_path, progress=False)
    monkeypatch.setattr(selection_module, "fit", real_fit)
    finished = {p.relative_to(tmp_path).as_posix(): p.stat().st_mtime_ns for p in tmp_path.glob("*/fold*.json")}
    assert sorted(finished) == ["extensive/fold0.json", "extensive/fold1.json"]

    counter = EpochCounter()
    resumed = select(atoms_per_cell, candidates, scheme, directory=tmp_path, progress=False, callbacks=[counter])
    assert counter.epochs == 2 * 2  # only the two folds of "mean" trained; "extensive" was reused (or restored)
    assert {k: (tmp_path / k).stat().st_mtime_ns for k in finished} == finished  # finished records untouched
    assert all(np.isfinite(list(resumed.scores.values())))
    again = select(atoms_per_cell, candidates, scheme, directory=tmp_path, progress=False, callbacks=[counter])
    assert counter.epochs == 4
    assert again.scores == resumed.scores

    changed = {**candidates, "mean": TrainSpec(max_epochs=2, lr=5e-3, **{**TINY, "readout": "mean"})}
    with pytest.raises(FingerprintMismatch, match=r"mean/fold0\.json was produced by another run \(spec\.lr: 0\.002"):
        select(atoms_per_cell, changed, scheme, directory=tmp_path, progress=False)
    # Trainer arguments that change results are part of the records' fingerprint too (before any training)
    with pytest.raises(FingerprintMismatch, match=r"fold0\.json was produced by another run \(trainer"):
        select(atoms_per_cell, candidates, scheme, directory=tmp_path, progress=False,
               trainer_kwargs={"accumulate_grad_batches": 2})  # fmt: skip
    with pytest.raises(FingerprintMismatch, match=r"scheme\.k: 2 there, 3 here"):
        select(atoms_per_cell, candidates, InnerKFold(3), directory=tmp_path, progress=False)


def test_select_refuses_what_it_cannot_choose_among(atoms_per_cell):
    with pytest.raises(ValueError, match="at least one candidate"):
        select(atoms_per_cell, {}, progress=False)
    with pytest.raises(ValueError, match="names a folder"):
        select(atoms_per_cell, {"../up": TrainSpec(**TINY)}, progress=False)
    with pytest.raises(ValueError, match="k >= 2"):
        InnerKFold(1)


def test_a_classifier_is_chosen_on_splits_that_hold_every_class(atoms_per_cell, monkeypatch):
    """60 structures, 5 of one class: most 10 % validation splits held none of them, and the selection then kept
    whichever candidate best predicted "always the other class"; a candidate list without a graph network was
    refused only after the forest had featurized and trained."""
    from matgl_hybrid.data.splits import split_indices
    from matgl_hybrid.training import train

    labels = np.r_[np.ones(5), np.zeros(55)]
    keys = [f"s{i}" for i in range(60)]
    for seed in range(30):
        kept, held = split_indices(60, 0.1, seed, keys, classes=labels)
        assert labels[held].sum() >= 1
        assert labels[kept].sum() >= 1
        assert len(held) == 6
    n = len(atoms_per_cell)
    classes = (np.arange(n) % 2).astype(float)
    for scheme in (ValidationSplit(0.2), InnerKFold(3)):
        for _, scored in scheme.splits(atoms_per_cell, classes):
            assert set(classes[scored]) == {0.0, 1.0}
    plain = np.sort(np.random.default_rng(0).permutation(60)[:6])  # without classes: the split as it always was
    np.testing.assert_array_equal(split_indices(60, 0.1, 0, keys)[1], plain)
    monkeypatch.setattr(selection_module, "select", lambda *a, **k: pytest.fail("selection ran"))
    with pytest.raises(ValueError, match="no candidate is a graph network"):
        train(atoms_per_cell, TrainSpec(**TINY), candidates={"forest": DescriptorForest("gong28")})


@pytest.mark.parametrize(
    ("candidate", "reason"),
    [
        (DescriptorForest("gong28+compositon"), "unknown descriptor set 'compositon'|compositon"),
        (TrainSpec(**{**TINY, "descriptor_set": "gong28+compositon"}), "compositon"),
        (TrainSpec(backbone="tensornet-matpes-pbe", cutoff=4.0), r"pretrained with a 5\.0 Å cutoff, not 4\.0"),
        (TrainSpec(**{**TINY, "node_embeddings": "no/such/encoder:0,1"}), "no saved encoder"),
    ],
    ids=["forest", "network", "pretrained-cutoff", "encoder"],
)
def test_a_candidate_that_cannot_train_is_refused_before_any_trains(atoms_per_cell, monkeypatch, candidate, reason):
    """A bad last candidate failed only when its turn came: the candidates before it trained for nothing."""
    trained = []
    monkeypatch.setattr(selection_module, "_fit_unit", lambda *a, **k: trained.append(a) or pytest.fail("trained"))
    with pytest.raises(ValueError, match=rf"candidate 'last': .*({reason})"):
        select(atoms_per_cell, {"first": TrainSpec(**TINY), "last": candidate}, progress=False)
    assert trained == []


def test_classifiers_are_chosen_by_log_loss_not_by_the_mae_of_their_probabilities():
    """MAE rewards probabilities pushed to 0 or 1: B (one confident miss) has the lower MAE, A the proper score."""
    y = [0.0, 1.0, 1.0, 0.0]
    folds = {
        "A": [{"mae": 0.4, "seconds": 1.0, "ids": list("abcd"), "y_true": y, "y_pred": [0.4, 0.6, 0.6, 0.4]}],
        "B": [{"mae": 0.25, "seconds": 1.0, "ids": list("abcd"), "y_true": y, "y_pred": [0.0, 1.0, 0.0, 0.0]}],
    }
    classifier = TrainSpec(**TINY, task_type="classification")
    chosen = Selection(ValidationSplit(), {"A": classifier, "B": classifier}, folds)
    assert chosen.metric == "log loss"
    assert chosen.chosen == "A"
    assert chosen.scores["A"] == pytest.approx(-np.log(0.6))
    assert chosen.maes == pytest.approx({"A": 0.4, "B": 0.25})
    assert "inner log loss" in chosen.summary()
    assert Selection(ValidationSplit(), {"A": TrainSpec(**TINY), "B": TrainSpec(**TINY)}, folds).chosen == "B"


def test_a_selection_whose_every_graph_network_failed_refuses_to_keep_one(atoms_per_cell, monkeypatch):
    """Non-finite predictions (a diverged training) score NaN: with a finite forest beside them, the first graph
    network would otherwise be kept and shipped."""

    class Diverged:
        def predict(self, structures, **kwargs):
            return np.full(len(structures), np.nan)

        def cpu(self):
            return self

    def diverged_fit(*args, **kwargs):
        return FitResult(model=Diverged(), best_val_mae=float("nan"), best_epoch=0, epochs_run=1, train_ids=[],
                         val_ids=[])  # fmt: skip

    monkeypatch.setattr(selection_module, "_fit_unit", diverged_fit)
    candidates = {"a": TrainSpec(**TINY), "forest": DescriptorForest("lattice", n_estimators=5)}
    with pytest.raises(ValueError, match=r"every graph-network candidate failed on inner data .*a nan"):
        select(atoms_per_cell, candidates, progress=False)


def test_a_candidate_whose_model_predicts_non_finite_values_loses_and_the_selection_goes_on(atoms_per_cell,
                                                                                            monkeypatch):  # fmt: skip
    """The prediction path refuses NaN outputs (an error for a user); inside a selection that candidate scores NaN
    and ranks last, as the docstrings promise, instead of aborting the whole selection."""
    from matgl_hybrid.errors import NonFinitePredictions

    class Diverged:
        def predict(self, structures, **kwargs):
            raise NonFinitePredictions("HybridModel gave non-finite predictions for 3 of 3 structures")

        def cpu(self):
            return self

    original = selection_module._fit_unit

    def fit_unit(train, scored, candidate, scheme, k, directory, name, *args, **kwargs):
        if name == "diverged":
            return FitResult(model=Diverged(), best_val_mae=float("nan"), best_epoch=0, epochs_run=1, train_ids=[],
                             val_ids=[])  # fmt: skip
        return original(train, scored, candidate, scheme, k, directory, name, *args, **kwargs)

    monkeypatch.setattr(selection_module, "_fit_unit", fit_unit)
    chosen = select(atoms_per_cell, {"diverged": TrainSpec(**TINY), "fine": TrainSpec(**TINY)}, progress=False)
    assert chosen.model_name == "fine"
    assert np.isnan(chosen.scores["diverged"])
    assert np.isfinite(chosen.scores["fine"])


def test_the_forest_guard_trains_on_the_cores_asked_for_and_its_fingerprint_ignores_them(atoms_per_cell, monkeypatch):
    """``TrainSpec.n_jobs`` (1 by default) reaches the forest; scikit-learn's -1 would take every core beside a
    benchmark. Where it computes is not part of what it computes."""
    from matgl_hybrid.training import baselines

    asked = []
    original = baselines.descriptor_forest

    def recording(**kwargs):
        asked.append(kwargs["n_jobs"])
        return original(**kwargs)

    monkeypatch.setattr(baselines, "descriptor_forest", recording)
    for n_jobs in (1, 2):
        forest = default_candidates(TrainSpec(**TINY, n_jobs=n_jobs))["forest"]
        rows = np.arange(12.0).reshape(6, 2)
        forest.fit_predict(pd.DataFrame(rows), np.arange(6.0), pd.DataFrame(rows))
    assert asked == [1, 2]
    one, two = (selection_module._fingerprint(atoms_per_cell, DescriptorForest("lattice", n_jobs=n), ValidationSplit())
                for n in (1, -1))  # fmt: skip
    assert one == two


def test_no_select_with_a_choice_of_candidates_is_refused_and_cv_chooses_with_inner_folds_alone():
    from matgl_hybrid.cli import build_parser
    from matgl_hybrid.cli.spec import selection

    base = ["--data", "d.json", "--target", "y"]
    args = build_parser().parse_args(["train", *base, "--out", "m", "--no-select", "--inner-folds", "3"])
    with pytest.raises(ValueError, match="--no-select trains the one spec given"):
        selection(args, TrainSpec())
    assert selection(build_parser().parse_args(["train", *base, "--out", "m", "--no-select"]), TrainSpec()) == (
        None,
        None,
    )
    candidates, scheme = selection(
        build_parser().parse_args(["cv", *base, "--out", "o", "--inner-folds", "3"]), TrainSpec()
    )
    assert set(candidates) == {"extensive", "intensive", "forest"}
    assert scheme == InnerKFold(3, 0)


def test_a_readout_named_in_the_config_is_kept_even_the_default_one(tmp_path):
    from matgl_hybrid.cli import build_parser
    from matgl_hybrid.cli.spec import selection, train_spec

    config = tmp_path / "spec.json"
    config.write_text(json.dumps({"readout": TrainSpec().readout}))
    args = build_parser().parse_args(["train", "--data", "d.json", "--target", "y", "--out", "m", "--config",
                                      str(config)])  # fmt: skip
    candidates, _ = selection(args, train_spec(args))
    assert set(candidates) == {TrainSpec().readout, "forest"}


def test_default_candidates_cover_extensive_and_intensive_readouts_with_a_forest_guard():
    spec = TrainSpec(descriptor_set="gong28")
    found = default_candidates(spec)
    assert [c.readout for c in (found["extensive"], found["intensive"])] == ["extensive", "set2set"]
    assert found["forest"] == DescriptorForest("gong28", seed=spec.seed)
    assert default_candidates(TrainSpec(descriptor_set=None))["forest"].descriptor_set == "gong28+composition"
    chosen = default_candidates(spec, readout="mean")
    assert list(chosen) == ["mean", "forest"]
    assert chosen["mean"].readout == "mean"


@pytest.mark.slow
def test_train_with_defaults_selects_and_records_every_candidate_in_the_record_and_card(tmp_path, capsys):
    path, _ = write_small_records(DEMO_DATA, "de_jong_2015_elasticity.json.gz", 30, tmp_path)
    out = tmp_path / "model"
    args = ["--data", str(path), "--target", "K_VRH", "--max-epochs", "2", "--cache-dir", str(tmp_path / "cache")]
    assert main(["train", *args, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    record = json.loads((out / "training.json").read_text())
    chosen = record["selection"]
    assert list(chosen["candidates"]) == ["extensive", "intensive", "forest"]
    assert chosen["scheme"] == {"scheme": "validation_split", "fraction": 0.1, "seed": 0}
    assert chosen["chosen"] == min(chosen["inner_mae"], key=chosen["inner_mae"].get)
    assert record["spec"]["readout"] == chosen["candidates"][chosen["model"]]["readout"]
    assert record["spec"]["descriptor_set"] == TrainSpec().descriptor_set  # the recipe's inputs, for all three
    assert chosen["candidates"]["forest"]["descriptor_set"] == TrainSpec().descriptor_set
    assert chosen["summary"] in printed
    assert printed.count("chose ") == 1
    card = (out / "model_card.md").read_text()
    assert "## Model selection" in card
    assert f"| {chosen['chosen']} (chosen) |" in card

    single = tmp_path / "single"
    assert main(["train", *args, "--no-select", "--readout", "mean", "--out", str(single)]) == 0
    record = json.loads((single / "training.json").read_text())
    assert "selection" not in record
    assert record["spec"]["readout"] == "mean"
    assert "chose " not in capsys.readouterr().out


def test_cv_with_candidates_chooses_in_each_fold_on_its_training_part(elastic, tmp_path):
    candidates = {"gnn": TrainSpec(max_epochs=1, **TINY), "forest": DescriptorForest("lattice", n_estimators=20)}
    summary = run_cv(elastic, TrainSpec(max_epochs=1, **TINY), tmp_path / "cv", None, candidates=candidates)
    assert summary["folds_done"] == 5
    for fold in range(5):
        record = json.loads((tmp_path / "cv" / "folds" / f"fold{fold}.json").read_text())
        params = record["params"]
        assert params["candidate"] == "gnn"
        assert set(params["inner_mae"]) == {"gnn", "forest"}
        assert params["chosen"] == min(params["inner_mae"], key=params["inner_mae"].get)
        inner = json.loads((tmp_path / "cv" / "selection" / f"fold{fold}" / "gnn" / "fold0.json").read_text())
        assert set(inner["ids"]).isdisjoint(record["ids"])  # the test fold plays no part in the choice
    assert "chosen in each fold" in (tmp_path / "cv" / "cv.md").read_text()
    # a rerun (to resume, or to rebuild the report) reuses every fold, on another machine's settings too
    again = {"gnn": TrainSpec(max_epochs=1, **{**TINY, "progress": True}), "forest": candidates["forest"]}
    assert run_cv(elastic, TrainSpec(max_epochs=1, **TINY), tmp_path / "cv", None, candidates=again) == summary


def test_a_candidates_file_may_hold_the_forest_and_a_bad_forest_entry_is_named(tmp_path):
    from matgl_hybrid.training import candidate_specs, read_candidates

    path = tmp_path / "candidates.json"
    path.write_text(json.dumps({"mean": {"readout": "mean"}, "rf": {"model": "random_forest", "n_estimators": 10}}))
    found = candidate_specs(TrainSpec(descriptor_set="gong28"), read_candidates(path), forests=True)
    assert found["mean"].readout == "mean"
    assert found["rf"] == DescriptorForest("gong28", n_estimators=10)
    with pytest.raises(ValueError, match="unknown TrainSpec fields"):  # Matbench's candidates are graph specs only
        candidate_specs(TrainSpec(), read_candidates(path))
    path.write_text(json.dumps({"rf": {"model": "random_forest", "trees": 10}}))
    with pytest.raises(ValueError, match=r"candidates\.json: candidate 'rf': unknown random-forest fields \['trees'\]"):
        read_candidates(path)
    path.write_text(json.dumps({"rf": {"model": "random_forest", "n_estimators": 0}}))
    with pytest.raises(ValueError, match="n_estimators must be an integer >= 1"):
        read_candidates(path)


def test_cv_of_a_classifier_reports_roc_auc_not_the_mae_of_probabilities(elastic, tmp_path):
    """The MAE of probabilities rewards pushing them to 0 or 1: a classifier's cross-validation is scored, ranked and
    drawn by ROC-AUC (per fold), with no parity plot of probabilities."""
    labelled = elastic.subset(range(len(elastic)))
    labelled.targets = (labelled.targets > np.median(labelled.targets)).astype(float)
    spec = TrainSpec(max_epochs=1, task_type="classification", **TINY)
    summary = run_cv(labelled, spec, tmp_path / "cv", None)
    folds = [json.loads((tmp_path / "cv" / "folds" / f"fold{k}.json").read_text()) for k in range(5)]
    expected = [roc_auc_score(f["y_true"], f["y_pred"]) if len(set(f["y_true"])) == 2 else np.nan for f in folds]
    np.testing.assert_allclose(summary["fold_rocauc"], expected)
    report = (tmp_path / "cv" / "cv.md").read_text()
    assert "| ROC-AUC (mean ± std) |" in report
    assert "MAE/MAD" not in report
    # the folds are stratified by class, as Matbench's classification folds: each holds its share of positives
    sizes = [len(f["y_true"]) for f in folds]
    assert np.ptp([sum(f["y_true"]) for f in folds]) <= 1 + np.ptp(sizes)  # within one positive of each other
    stratified = kfold_splits(len(labelled), classes=labelled.targets)
    assert [f["ids"] for f in folds] == [[labelled.ids[i] for i in test] for _, test in stratified]
    # a fold whose test part holds one class has no ROC-AUC: the mean is over the others, and the report is written
    rare = elastic.subset(range(len(elastic)))
    rare.targets = (np.arange(len(elastic)) == 0).astype(float)  # one positive: one fold has both classes
    with pytest.warns(UserWarning, match="least populated class"):  # scikit-learn's, about stratifying 1 of a class
        summary = run_cv(rare, spec, tmp_path / "rare", None)
    assert np.isfinite(summary["fold_rocauc"]).sum() == 1
    assert summary["rocauc_mean"] == pytest.approx(np.nanmax(summary["fold_rocauc"]))
    assert (tmp_path / "rare" / "cv.png").is_file()


def test_a_classifiers_card_scores_its_test_split_and_shows_its_choice_by_log_loss(elastic):
    """The card scored a classifier's held-out probabilities by MAE, RMSE and R² in "target units", and its
    selection table showed only the inner MAE, by which the "(chosen)" row could look the worse one."""
    from matgl_hybrid.model_card import render_card
    from matgl_hybrid.training import train

    labelled = elastic.subset(range(len(elastic)))
    labelled.targets = (labelled.targets > np.median(labelled.targets)).astype(float)
    spec = TrainSpec(max_epochs=1, task_type="classification", element_types="all", **TINY)
    candidates = {"mean": dataclasses.replace(spec, readout="mean"), "sum": dataclasses.replace(spec, readout="sum")}
    trained = train(labelled, spec, test_fraction=0.25, candidates=candidates, scheme=ValidationSplit())
    test = trained.score_test()
    assert test["rocauc"] == pytest.approx(roc_auc_score(trained.test.targets, test["predictions"]))
    card = render_card(trained.training_record(), "classifier")
    assert "| ROC-AUC | log loss (nats) | accuracy at 0.5 | n |" in card
    assert "| MAE | RMSE |" not in card
    selection = trained.record["selection"]
    assert "inner log loss |" in card
    assert f"{selection['inner_score'][selection['chosen']]:.4g} |" in card
