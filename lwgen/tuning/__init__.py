"""Hyper-parameter search for the diffusion generator: an Optuna study of short, time-boxed training runs scored
on held-out images, pruned early, stored in a database so that a search can be continued and inspected."""
from .search import (
           SearchSpace,
           TuneData,
           TuneSettings,
           best_config,
           open_study,
           prepare_data,
           run_trial,
           sqlite_path,
)
from .validation import Validation

__all__ = ["SearchSpace", "TuneData", "TuneSettings", "best_config", "open_study", "prepare_data", "run_trial",
           "sqlite_path", "Validation"]
