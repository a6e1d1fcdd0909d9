"""Validation helpers shared by every options model: strict models and one-line errors."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from lpft.errors import ConfigError
from lpft.registry import nearest_names


class StrictModel(BaseModel):
    """Options model that rejects unknown keys and validates on assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


def distinct(values: list[float]) -> list[float]:
    """``values`` unchanged, or a ValueError naming the repeated ones (for grids)."""
    repeated = sorted({v for v in values if values.count(v) > 1})
    if repeated:
        raise ValueError(f"values must be distinct, {repeated} repeated")
    return values


def _error_location(loc: tuple[Any, ...]) -> str:
    return ".".join(str(part) for part in loc) or "config"


def format_validation_error(
    exc: ValidationError, model: type[BaseModel], source: str, prefix: tuple[str, ...] = ()
) -> str:
    """One line for the first error: the dotted key, what is wrong, and what is allowed."""
    err = exc.errors()[0]
    where = _error_location((*prefix, *err["loc"]))
    if err["type"] == "extra_forbidden":
        parent = _model_at(model, err["loc"][:-1])
        allowed = list(parent.model_fields) if parent is not None else []
        key = str(err["loc"][-1])
        close = nearest_names(key, allowed)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        return f"{source}: unknown key '{where}' (allowed: {', '.join(allowed)}){hint}"
    message = err["msg"].removeprefix("Value error, ")
    return f"{source}: {where}={err.get('input')!r} is invalid: {message}"


def validate_options(
    model: type[BaseModel], options: Any, source: str, prefix: tuple[str, ...] = ()
) -> BaseModel:
    """``model.model_validate(options)`` with the first problem raised as a ``ConfigError``."""
    if isinstance(options, BaseModel):
        options = options.model_dump()
    try:
        return model.model_validate(options or {})
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, model, source, prefix)) from None


def _model_at(model: type[BaseModel], loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """The nested options model at a validation error's location (for its allowed keys)."""
    current: type[BaseModel] | None = model
    for part in loc:
        field = current.model_fields.get(str(part)) if current is not None else None
        annotation = getattr(field, "annotation", None)
        is_model = isinstance(annotation, type) and issubclass(annotation, BaseModel)
        current = annotation if is_model else None
    return current
