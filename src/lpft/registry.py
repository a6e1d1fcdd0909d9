"""A tiny name -> object registry, shared by backbones, benchmarks and methods.

Adding a benchmark, backbone source or method means decorating one function or class with
``@REGISTRY.register("name")``; everything else (CLI choices, config validation, error messages
with the nearest valid names) reads from the registry.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from typing import Generic, TypeVar

from lpft.errors import ConfigError

T = TypeVar("T")


def nearest_names(name: str, candidates: list[str], n: int = 3) -> list[str]:
    """The registered names closest to ``name``, for 'did you mean' messages."""
    return difflib.get_close_matches(name, candidates, n=n, cutoff=0.4)


def unknown_name_message(kind: str, name: str, candidates: list[str]) -> str:
    close = nearest_names(name, candidates)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    return f"unknown {kind} '{name}' (valid: {', '.join(sorted(candidates))}){hint}"


class Registry(Generic[T]):
    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def decorator(obj: T) -> T:
            if name in self._entries:
                raise ValueError(f"{self.kind} '{name}' is registered twice")
            self._entries[name] = obj
            return obj

        return decorator

    def get(self, name: str) -> T:
        try:
            return self._entries[name]
        except KeyError:
            raise ConfigError(unknown_name_message(self.kind, name, self.names())) from None

    def names(self) -> list[str]:
        return list(self._entries)
