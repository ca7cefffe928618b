"""Training: ``TrainSpec`` (model + training settings, JSON-able), the Lightning pieces, ``fit`` and ``train``.

The pieces: :class:`HybridDataModule` (featurize, fit the descriptor transform on the training split only, build the
graph datasets and their loaders), :func:`build_model` (a :class:`HybridModel` for a spec and a set-up data module),
:class:`HybridLightningModule` (MatGL's ``ModelLightningModule``) and a Lightning ``Trainer``. :func:`fit` is the
one-call convenience on top (one model, with early stopping, the best weights, checkpoints that resume);
:func:`train` is what ``matgl-hybrid train`` does (an optional held-out test split, an ensemble), and
:meth:`TrainedModel.save` writes its checkpoint with a model card; :func:`train_file` goes from a data file to the
saved model. :func:`select` (``selection``) chooses among candidates (:mod:`.candidates`: graph specs and the
descriptors random forest, :class:`DescriptorForest`) on inner data, the engine of ``train``, ``cv`` and Matbench.
"""

from matgl_hybrid.training.baselines import DescriptorForest
from matgl_hybrid.training.candidates import Candidate, candidate_specs, default_candidates, read_candidates
from matgl_hybrid.training.datamodule import HybridDataModule
from matgl_hybrid.training.fit import FitResult, device_name, fit
from matgl_hybrid.training.modules import History, HybridLightningModule, KeepBestWeights, build_model, build_module
from matgl_hybrid.training.resume import ResumableRun
from matgl_hybrid.training.selection import InnerKFold, Selection, ValidationSplit, check_records, select
from matgl_hybrid.training.spec import LOSSES, TrainSpec
from matgl_hybrid.training.train import TrainedModel, train
from matgl_hybrid.training.train_file import load_training_data, smallest_cutoff, train_file

__all__ = [
    "LOSSES",
    "Candidate",
    "DescriptorForest",
    "FitResult",
    "History",
    "HybridDataModule",
    "HybridLightningModule",
    "InnerKFold",
    "KeepBestWeights",
    "ResumableRun",
    "Selection",
    "TrainSpec",
    "TrainedModel",
    "ValidationSplit",
    "build_model",
    "build_module",
    "candidate_specs",
    "check_records",
    "default_candidates",
    "device_name",
    "fit",
    "load_training_data",
    "read_candidates",
    "select",
    "smallest_cutoff",
    "train",
    "train_file",
]
