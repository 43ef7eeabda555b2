"""Reproduce or retrain PneumoView's classifier: ``python -m training <subcommand>``.

Run from the repository root (the package is not installed). Subcommands: ``prepare`` (decode,
split, cache), ``train``, ``export`` (calibrate on validation, test metrics, write the model
folder), ``evaluate`` (score a model on any source, with plots), ``cv`` (cross-validation of a
fine-tune over the adult images), ``search`` (several configurations' cross-validation, a
table), ``reproduce`` (the bundled model's recipe, resumable).
"""
