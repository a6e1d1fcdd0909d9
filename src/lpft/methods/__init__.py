"""Transfer methods behind one interface; see ``lpft.methods.base.Method``.

A method is one module here (or in a plugin package, see ``lpft.registry``) that subclasses
``Method`` and decorates it with ``@METHODS.register("name")``; importing it registers it.
"""

from lpft.methods import finetune, freeze_embed, l2sp, lp, lpft, soup, surgical, wise_ft
from lpft.methods.base import Candidate, Method, Selected, cell_id
from lpft.registry import METHODS, method_base_name

__all__ = [
    "METHODS",
    "Candidate",
    "Method",
    "Selected",
    "cell_id",
    "finetune",
    "freeze_embed",
    "l2sp",
    "lp",
    "lpft",
    "method_for",
    "soup",
    "surgical",
    "wise_ft",
]


def method_for(key: str) -> Method:
    """The method instance for a run's method key (``name`` or ``name@label``)."""
    return METHODS.get(method_base_name(key))()
