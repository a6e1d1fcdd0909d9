"""Transfer methods behind one interface; see ``lpft.methods.base.Method``.

Add a method by subclassing ``Method`` in a module imported below and decorating it with
``@METHODS.register("name")``.
"""

from lpft.methods import finetune, lp
from lpft.methods.base import Candidate, Method, cell_id
from lpft.methods.registry import METHODS, base_name

__all__ = ["METHODS", "Candidate", "Method", "base_name", "cell_id", "finetune", "lp", "method_for"]


def method_for(key: str) -> Method:
    """The method instance for a run's method key (``name`` or ``name@label``)."""
    return METHODS.get(base_name(key))()
