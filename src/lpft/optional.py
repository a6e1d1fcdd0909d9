"""Optional dependencies (cluster launchers, trackers), imported only when a run asks for them."""

from __future__ import annotations

import importlib
from types import ModuleType

from lpft.errors import ConfigError


def import_optional(module: str, extra: str) -> ModuleType:
    """Import ``module``, or fail with one line naming the extra that installs it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise ConfigError(
            f"{module} is not installed; install it with pip install 'lpft[{extra}]'"
        ) from None
