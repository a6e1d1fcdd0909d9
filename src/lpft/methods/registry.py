"""The method registry; a run's method key is ``name`` or ``name@label`` (a variant)."""

from __future__ import annotations

from lpft.registry import Registry

METHODS: Registry = Registry("method")


def base_name(key: str) -> str:
    """``ft@bn-eval`` -> ``ft``: variants share a method and differ in options."""
    return key.split("@", 1)[0]
