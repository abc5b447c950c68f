"""The heterogeneous market's experiment: learnwares and users on scikit-learn's bundled tables,
each holding other columns, described in their own words; search and reuse through a real
market (``python -m bench.hetero_experiment [--quick]``)."""
