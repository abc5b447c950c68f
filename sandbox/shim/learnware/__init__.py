"""A small stand-in for the reference ``learnware`` package, importable only inside Wharf's
sandbox, so that models written against the reference (``from learnware.model import
BaseModel``) run without installing it.

It offers ``learnware.model.BaseModel`` and placeholder names in ``learnware.specification``;
nothing else of the reference package exists here.
"""

__version__ = "0.0.0+wharf.shim"
