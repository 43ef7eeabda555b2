"""Reproduce or retrain PneumoView's classifier: ``python -m training <subcommand>``.

Run from the repository root (the package is not installed). Subcommands: ``prepare`` (decode,
split, cache), ``train``, ``export`` (calibrate on validation, test metrics, write the model
folder), ``evaluate`` (score a model on any source, with plots).
"""
