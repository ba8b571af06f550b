"""Hyperparameter search outside the trainer: Optuna define-by-run over config keys.

space.py reads `tune.space`; objective.py trains one trial on train/validation; search.py runs
the study (samplers, pruners, storages, workers); outputs.py and plots.py write RUN_DIR/tune/.
"""
