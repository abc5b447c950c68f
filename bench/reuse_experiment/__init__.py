"""Reuse experiment: build a market of 30+ learnwares from scikit-learn's bundled digits and
a seeded store-sales generator, search it as users whose tasks overlap it differently, and
report the reference's tables (Mean/Best in market, Top-1 reuse, JobSelector, Averaging) and
error-versus-labels curves (EnsemblePruning, FeatureAugment, training from scratch).

Run from the repository root::

    PYTHONPATH=. .venv/bin/python -m bench.reuse_experiment [--quick]

The full run writes ``results.md``, ``curve_classification.png`` and
``curve_regression.png`` next to this file; ``--quick`` runs a small version and writes to a
temporary folder unless ``--out`` says otherwise.
"""
