"""The heterogeneous market on the server: which learnwares take part, the map's versions and
the specs computed with each.

- :mod:`.versions`: a map version's life in the catalog (asked for, trained, computing its
  specs, ready) and the one searches use; no torch, so the API reads it;
- :mod:`.eligible`: the accepted learnwares that can take part, with their columns;
- :mod:`.maps`: maps in the object store and mapping specs (torch: workers only).

Searching the hetero partition builds on these: ``maps.current_map(catalog, store, settings)``
(the ready map, with its ``version``; :class:`NoHeteroMap` before there is one),
``maps.map_requirement(hmap, semantic, rkme)`` (the user's RKME in the shared space, or a
:class:`~wharf.specification.hetero.HeteroInputError` naming the field) and
``versions.specs_of_version(session, version)`` (every accepted learnware's spec under that
version, as reference JSON): a search maps and compares with one version only.
"""

from .versions import NoHeteroMap, current_version, request_training

__all__ = ["NoHeteroMap", "current_version", "request_training"]
