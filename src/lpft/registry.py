"""Name -> object registries for the three things users add: methods, benchmarks, backbones.

Adding one means decorating one class or function with ``@REGISTRY.register("name")`` in a module
that registers itself on import. lpft's own modules and those of any installed package that
declares an ``lpft.plugins`` entry point are imported the first time a registry is read, so
everything that validates names (CLI choices, configuration, error messages with the nearest
valid names) sees built-in and third-party entries alike, and nothing has to import the methods,
benchmarks or backbones to look them up.
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any, Generic, TypeVar
from urllib.parse import parse_qsl

from lpft.errors import ConfigError

T = TypeVar("T")

PLUGIN_GROUP = "lpft.plugins"
# lpft's own plugins: each package registers its entries when imported.
BUILTIN_PLUGINS = ("lpft.models", "lpft.data", "lpft.methods")

_plugins_loaded = False


def load_plugins() -> None:
    """Import lpft's own registering packages, then every ``lpft.plugins`` entry point, once."""
    global _plugins_loaded
    if _plugins_loaded:
        return
    _plugins_loaded = True
    for module in BUILTIN_PLUGINS:
        importlib.import_module(module)
    for entry in entry_points(group=PLUGIN_GROUP):
        try:
            loaded = entry.load()
        except Exception as exc:
            raise ConfigError(
                f"plugin '{entry.name}' ({entry.value}) failed to import: "
                f"{type(exc).__name__}: {exc}"
            ) from None
        if callable(loaded):
            loaded()


def nearest_names(name: str, candidates: list[str], n: int = 3) -> list[str]:
    """The registered names closest to ``name``, for 'did you mean' messages."""
    return difflib.get_close_matches(name, candidates, n=n, cutoff=0.4)


def unknown_name_message(kind: str, name: str, candidates: list[str]) -> str:
    close = nearest_names(name, candidates)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    return f"unknown {kind} '{name}' (valid: {', '.join(sorted(candidates))}){hint}"


class Registry(Generic[T]):
    """Registered objects by name. ``plugins=True`` registries load plugins before lookups."""

    def __init__(self, kind: str, plugins: bool = False) -> None:
        self.kind = kind
        self.plugins = plugins
        self._entries: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def decorator(obj: T) -> T:
            if name in self._entries:
                raise ValueError(f"{self.kind} '{name}' is registered twice")
            self._entries[name] = obj
            return obj

        return decorator

    def get(self, name: str) -> T:
        if self.plugins:
            load_plugins()
        try:
            return self._entries[name]
        except KeyError:
            raise ConfigError(unknown_name_message(self.kind, name, self.names())) from None

    def names(self) -> list[str]:
        if self.plugins:
            load_plugins()
        return list(self._entries)


# Method classes (``lpft.methods.base.Method`` subclasses) by name.
METHODS: Registry[Any] = Registry("method", plugins=True)
# Benchmark entries (``lpft.data.benchmark.BenchmarkEntry``) by name.
BENCHMARKS: Registry[Any] = Registry("benchmark", plugins=True)
# Backbone sources: ``source`` of a ``source:name`` model spec -> ``BackboneSource``.
BACKBONE_SOURCES: Registry[Any] = Registry("backbone source", plugins=True)


def method_base_name(key: str) -> str:
    """``ft@bn-eval`` -> ``ft``: a run's method key is ``name`` or ``name@label`` (a variant)."""
    return key.split("@", 1)[0]


RANDOM_WEIGHTS = "random"
PRETRAINED_WEIGHTS = "pretrained"


@dataclass(frozen=True)
class ModelSpec:
    """A backbone spec ``source:name[?key=value&...]``; every source but ``builtin`` accepts
    ``weights=random`` (the architecture with seeded random weights, nothing downloaded)."""

    source: str
    name: str
    options: dict[str, str] = field(default_factory=dict)

    @property
    def weights(self) -> str:
        return self.options.get("weights", PRETRAINED_WEIGHTS)

    @property
    def random_weights(self) -> bool:
        return self.weights == RANDOM_WEIGHTS

    def with_options(self, **options: str) -> ModelSpec:
        return ModelSpec(self.source, self.name, {**self.options, **options})

    def __str__(self) -> str:
        query = "&".join(f"{k}={v}" for k, v in self.options.items())
        return f"{self.source}:{self.name}" + (f"?{query}" if query else "")


def split_model_spec(spec: str) -> ModelSpec:
    """``source:name?key=value`` into its parts, unchecked."""
    source, sep, rest = spec.partition(":")
    name, _, query = rest.partition("?")
    if not sep or not name:
        raise ConfigError(
            f"model spec '{spec}' must look like SOURCE:NAME "
            f"(sources: {', '.join(BACKBONE_SOURCES.names())})"
        )
    options = dict(parse_qsl(query, keep_blank_values=True, separator="&")) if query else {}
    return ModelSpec(source, name, options)


def check_model_spec(spec: ModelSpec) -> ModelSpec:
    """Check the source, the option keys, and what the source checks without building (e.g.
    builtin names, torchvision weights enums), so a bad spec fails before any work."""
    entry = BACKBONE_SOURCES.get(spec.source)
    unknown = sorted(set(spec.options) - entry.options)
    if unknown:
        allowed = ", ".join(sorted(entry.options)) or "none"
        raise ConfigError(
            f"model spec '{spec}': unknown option {unknown[0]!r} for source '{spec.source}' "
            f"(allowed: {allowed})"
        )
    entry.check(spec)
    return spec


def parse_model_spec(spec: str) -> ModelSpec:
    """Split a backbone spec ``source:name[?options]`` and check it against its source."""
    return check_model_spec(split_model_spec(spec))
