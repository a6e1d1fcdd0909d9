"""The one typed, validated run configuration.

``RunConfig`` is built the same way from every entry point: paper defaults, then the
benchmark's own defaults, then a YAML file, then the ``--quick`` profile, then explicit CLI flags
or Python keyword arguments (later layers win). ``resolve_config`` does the merging; pydantic does
the validation, and ``ConfigError`` turns the first problem into one line naming the key.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import numpy as np
import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PositiveFloat,
    ValidationError,
    field_validator,
    model_validator,
)

from lpft.errors import ConfigError
from lpft.registry import nearest_names

PAPER_FT_LRS = [3e-5, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2]
PAPER_LPFT_LRS = [3e-7, 1e-6, 3e-6, 1e-5, 3e-5, 1e-4]


def default_c_grid() -> list[float]:
    """Inverse regularisation strengths: the paper's range [1e-7, 1e2], 6 values per decade."""
    return [float(c) for c in np.logspace(-7, 2, 55)]


def _unique(values: list[float]) -> list[float]:
    repeated = sorted({v for v in values if values.count(v) > 1})
    if repeated:
        raise ValueError(f"values must be distinct, {repeated} repeated")
    return values


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class LinearProbeOptions(StrictModel):
    """L2-regularised multinomial logistic regression on frozen features."""

    C: list[PositiveFloat] = Field(default_factory=default_c_grid, min_length=1)
    standardize: Literal["scalar", "none"] = "scalar"
    solver: Literal["auto", "newton", "lbfgs"] = "auto"
    tol: float = Field(1e-7, gt=0, le=1e-2)
    max_iter: int = Field(1000, ge=1)

    @field_validator("C")
    @classmethod
    def _sorted_unique(cls, grid: list[float]) -> list[float]:
        return sorted(_unique(grid))


class FineTuneOptions(StrictModel):
    """End-to-end training of backbone and head; LP-FT uses the same options."""

    lrs: list[PositiveFloat] = Field(default_factory=lambda: list(PAPER_FT_LRS), min_length=1)
    epochs: int = Field(20, ge=1, le=10_000)
    batch_size: int = Field(64, ge=1)
    optimizer: Literal["sgd", "adamw"] = "sgd"
    momentum: float = Field(0.9, ge=0.0, lt=1.0)
    weight_decay: float = Field(0.0, ge=0.0)
    warmup_epochs: float = Field(0.0, ge=0.0)
    head_init: Literal["default", "zero"] = "default"
    # "eval" trains with the whole network in eval mode (BatchNorm statistics frozen, dropout
    # off), as the official LP-FT code does; "train" is ordinary training mode.
    batchnorm: Literal["train", "eval"] = "train"
    checkpoint_every_steps: int | None = Field(None, ge=1)

    @field_validator("lrs")
    @classmethod
    def _unique_lrs(cls, lrs: list[float]) -> list[float]:
        return _unique(lrs)


class LPFTOptions(FineTuneOptions):
    """FT started from the LP head: the paper's smaller LR grid and frozen BatchNorm statistics."""

    lrs: list[PositiveFloat] = Field(default_factory=lambda: list(PAPER_LPFT_LRS), min_length=1)
    head_init: Literal["lp"] = "lp"
    batchnorm: Literal["train", "eval"] = "eval"


class RunConfig(StrictModel):
    benchmark: str = "digits-shift"
    benchmark_options: dict[str, Any] = Field(default_factory=dict)
    model: str = "builtin:glyph-resnet"
    methods: dict[str, Any] = Field(default_factory=lambda: {"lp": {}, "ft": {}, "lpft": {}})
    seeds: int = Field(3, ge=1, le=1000)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    precision: Literal["fp32", "bf16"] = "fp32"
    out: Path | None = None
    data_root: Path | None = None
    num_workers: int = Field(0, ge=0, le=256)
    eval_batch_size: int = Field(256, ge=1)
    skip_bad_images: bool = False
    deterministic: bool = True
    keep_checkpoints: bool = False
    report: bool = True

    @field_validator("model")
    @classmethod
    def _known_model(cls, spec: str) -> str:
        from lpft.models import parse_model_spec

        parse_model_spec(spec)
        return spec

    @field_validator("methods", mode="before")
    @classmethod
    def _methods_as_mapping(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = [name.strip() for name in value.split(",") if name.strip()]
        if isinstance(value, list):
            value = {name: {} for name in value}
        return value

    @field_validator("methods")
    @classmethod
    def _validate_methods(cls, value: dict[str, Any]) -> dict[str, Any]:
        from lpft.methods import method_for

        if not value:
            raise ValueError("at least one method is required")
        validated = {}
        for name, options in value.items():
            model = method_for(name).options_model
            if isinstance(options, BaseModel):
                options = options.model_dump()
            try:
                validated[name] = model.model_validate(options or {})
            except ValidationError as exc:
                raise ConfigError(
                    format_validation_error(exc, model, "config", prefix=("methods", name))
                ) from None
        return validated

    @model_validator(mode="after")
    def _known_benchmark_options(self) -> RunConfig:
        from lpft.data import validate_benchmark_options

        validate_benchmark_options(self.benchmark, self.benchmark_options)
        return self

    def method_options(self, name: str) -> BaseModel:
        """Options for ``name``; a method that is a dependency but not requested gets defaults."""
        if name in self.methods:
            return self.methods[name]
        from lpft.methods import method_for

        return method_for(name).options_model()

    def to_plain(self) -> dict[str, Any]:
        data = self.model_dump(mode="json")
        data["methods"] = {n: o.model_dump(mode="json") for n, o in self.methods.items()}
        return data


QUICK_SEEDS = 2
QUICK_EPOCHS = 2


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


def _model_at(model: type[BaseModel], loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """The nested options model at a validation error's location (for its allowed keys)."""
    current: type[BaseModel] | None = model
    for part in loc:
        field = current.model_fields.get(str(part)) if current is not None else None
        annotation = getattr(field, "annotation", None)
        is_model = isinstance(annotation, type) and issubclass(annotation, BaseModel)
        current = annotation if is_model else None
    return current


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def load_yaml_config(path: Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{path}: not valid YAML{where}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of config keys, got {type(data).__name__}")
    return data


def _normalise_methods(layer: dict[str, Any]) -> dict[str, Any]:
    if "methods" in layer:
        layer = dict(layer)
        layer["methods"] = RunConfig._methods_as_mapping(layer["methods"])
    return layer


def apply_quick_profile(raw: dict[str, Any]) -> dict[str, Any]:
    """Seconds-long smoke profile: 2 seeds, 2 epochs, one LR per method, a coarse C grid."""
    from lpft.methods import method_for

    quick: dict[str, Any] = {"seeds": QUICK_SEEDS, "methods": {}}
    for name, options in raw.get("methods", {}).items():
        model = method_for(name).options_model
        defaults = model.model_validate(options or {})
        update: dict[str, Any] = {}
        if isinstance(defaults, FineTuneOptions):
            middle = defaults.lrs[len(defaults.lrs) // 2]
            update = {"epochs": QUICK_EPOCHS, "lrs": [middle]}
        elif isinstance(defaults, LinearProbeOptions):
            update = {"C": defaults.C[::3]}
        quick["methods"][name] = update
    return deep_merge(raw, quick)


def resolve_config(
    *,
    yaml_path: Path | None = None,
    quick: bool = False,
    overrides: dict[str, Any] | None = None,
    every_method: dict[str, Any] | None = None,
) -> RunConfig:
    """Merge the layers (paper < benchmark < YAML < quick < overrides) and validate once.

    ``every_method`` holds options (e.g. ``epochs``, ``lrs``) applied to each method whose
    options have that field, as the CLI's ``--epochs`` and ``--lrs`` do.
    """
    from lpft.data import benchmark_defaults
    from lpft.methods import method_for

    file_layer = _normalise_methods(load_yaml_config(yaml_path)) if yaml_path else {}
    override_layer = _normalise_methods(dict(overrides or {}))
    source = str(yaml_path) if yaml_path else "config"

    top = deep_merge(file_layer, override_layer)
    benchmark = top.get("benchmark", RunConfig.model_fields["benchmark"].default)
    bench_layer = benchmark_defaults(benchmark)
    method_names = list(
        override_layer.get("methods")
        or file_layer.get("methods")
        or bench_layer.get("methods")
        or RunConfig().methods
    )
    for name in method_names:
        method_for(name)

    raw: dict[str, Any] = {"methods": {name: {} for name in method_names}}
    raw = deep_merge(raw, _benchmark_method_defaults(bench_layer, method_names))
    raw = deep_merge(raw, _restrict_methods(file_layer, method_names))
    if quick:
        raw = apply_quick_profile(raw)
    raw = deep_merge(raw, _restrict_methods(override_layer, method_names))
    raw = deep_merge(raw, _broadcast_to_methods(every_method or {}, method_names))
    try:
        return RunConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, RunConfig, source)) from None


def _benchmark_method_defaults(layer: dict[str, Any], method_names: list[str]) -> dict[str, Any]:
    """A benchmark's defaults for ``ft`` also apply to variants such as ``ft@bn-eval``."""
    from lpft.methods import base_name

    methods = layer.get("methods") or {}
    layer = {k: v for k, v in layer.items() if k != "methods"}
    layer["methods"] = {}
    for name in method_names:
        base = dict(methods.get(base_name(name)) or {})
        layer["methods"][name] = deep_merge(base, methods.get(name) or {})
    return layer


def _broadcast_to_methods(options: dict[str, Any], method_names: list[str]) -> dict[str, Any]:
    from lpft.methods import method_for

    methods = {}
    for name in method_names:
        fields = method_for(name).options_model.model_fields
        methods[name] = {k: v for k, v in options.items() if k in fields}
    return {"methods": methods}


def _restrict_methods(layer: dict[str, Any], method_names: list[str]) -> dict[str, Any]:
    """Keep a layer's options only for the methods that will run."""
    if "methods" not in layer:
        return layer
    layer = dict(layer)
    methods = layer["methods"] or {}
    layer["methods"] = {n: (methods.get(n) or {}) for n in method_names if n in methods}
    return layer


def parse_set_option(item: str) -> dict[str, Any]:
    """``a.b.c=value`` (value parsed as YAML) -> nested dict, for ``--set``."""
    if "=" not in item:
        raise ConfigError(f"--set {item!r}: expected KEY=VALUE, e.g. methods.ft.epochs=5")
    key, _, text = item.partition("=")
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        raise ConfigError(f"--set {item!r}: value {text!r} is not valid YAML") from None
    nested: dict[str, Any] = value
    for part in reversed([p for p in key.split(".") if p]):
        nested = {part: nested}
    if not isinstance(nested, dict):
        raise ConfigError(f"--set {item!r}: empty key")
    return nested
