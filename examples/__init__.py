"""Example learnwares and users built from datasets that ship with scikit-learn (offline)."""
