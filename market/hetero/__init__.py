"""The heterogeneous market on the server: which learnwares take part, the map's versions and
the specs computed with each.

- :mod:`.versions`: a map version's life in the catalog (asked for, trained, computing its
  specs, ready) and the one searches use; no torch, so the API reads it;
- :mod:`.eligible`: the accepted learnwares that can take part, with their columns;
- :mod:`.maps`: maps in the object store and mapping specs (torch: workers only).

Searching the hetero partition (a requirement mapped with the current version, compared with
that version's specs) builds on :func:`versions.current_version`,
:func:`versions.specs_of_version`, :func:`maps.load_map` and :func:`maps.map_requirement`.
"""

from .versions import NoHeteroMap, current_version, request_training

__all__ = ["NoHeteroMap", "current_version", "request_training"]
