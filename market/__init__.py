"""The market's domain core: settings, catalog, object store, submission checker and search.

Imports point down: ``api`` and ``workers`` use this package; it uses ``sandbox`` (the checker
runs models there) and ``specification``. The contracts in ``pyproject.toml`` keep it so.
"""
