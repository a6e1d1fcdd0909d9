"""The one typed, validated run configuration.

``RunConfig`` is built the same way from every entry point: paper defaults, then the
benchmark's own defaults, then a YAML file, then the ``--quick`` profile, then explicit CLI flags
or Python keyword arguments, then ``--set`` (later layers win; see ``resolve_config``).
``resolve_config`` does the merging; pydantic does the validation, and ``ConfigError`` turns the
first problem into one line naming the key.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator

from lpft.errors import ConfigError
from lpft.registry import BENCHMARKS, METHODS, method_base_name, parse_model_spec
from lpft.validation import StrictModel, format_validation_error, validate_options


def method_class(key: str) -> Any:
    """The registered method class of a run's method key (``name`` or ``name@label``)."""
    return METHODS.get(method_base_name(key))


def _validated_method_options(name: str, options: Any) -> BaseModel:
    return validate_options(
        method_class(name).options_model, options, "config", prefix=("methods", name)
    )


class SlurmOptions(StrictModel):
    """One Slurm job per cell, submitted through submitit (``pip install 'lpft[slurm]'``)."""

    # "local" runs the jobs as processes on this machine (submitit's LocalExecutor); "debug"
    # runs them one after another in the launching process (submitit's DebugExecutor).
    cluster: Literal["slurm", "local", "debug"] = "slurm"
    partition: str | None = None
    gpus_per_job: int = Field(1, ge=0)
    cpus_per_job: int = Field(4, ge=1)
    mem_gb: float | None = Field(None, gt=0)
    time_minutes: int = Field(240, ge=1)
    array_parallelism: int = Field(64, ge=1)
    # Any further sbatch option, e.g. {"account": "abc", "qos": "high"}.
    sbatch: dict[str, Any] = Field(default_factory=dict)


class RayOptions(StrictModel):
    """One Ray task per cell (``pip install 'lpft[ray]'``)."""

    # An existing cluster ("auto", "ray://host:10001"); None starts a local instance.
    address: str | None = None
    num_cpus: float = Field(1.0, ge=0)
    num_gpus: float = Field(0.0, ge=0)
    # CPUs of a local instance (None: all of this machine's).
    local_cpus: int | None = Field(None, ge=1)


class LauncherOptions(StrictModel):
    """How ``lpft run --launcher`` fans the cells out (none: one process runs them all)."""

    name: Literal["local", "slurm", "ray"] | None = None
    # A claimed cell whose holder has not renewed its claim for this long may be taken over.
    lease_seconds: float = Field(120.0, ge=1)
    # A launch gives up on a cell once its job has failed this many times (diverged training is
    # a result, not a failure, and is never retried).
    max_failures: int = Field(2, ge=1, le=100)
    # How long a cell's job waits for the cells it depends on that another job is running.
    dependency_wait_seconds: float = Field(3600.0, ge=0)
    slurm: SlurmOptions = Field(default_factory=SlurmOptions)
    ray: RayOptions = Field(default_factory=RayOptions)


class TrackingOptions(StrictModel):
    """Experiment trackers fed with each cell's hyperparameters, epochs and final metrics."""

    log: list[Literal["tensorboard", "mlflow"]] = Field(default_factory=list)
    # MLflow tracking URI; None: a file store in RUN/mlruns (works offline).
    mlflow_uri: str | None = None
    mlflow_experiment: str = "lpft"

    @field_validator("log", mode="before")
    @classmethod
    def _comma_separated(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value


class RunConfig(StrictModel):
    benchmark: str = "digits-shift"
    benchmark_options: dict[str, Any] = Field(default_factory=dict)
    model: str = "builtin:glyph-resnet"
    methods: dict[str, Any] = Field(default_factory=lambda: {"lp": {}, "ft": {}, "lpft": {}})
    seeds: int = Field(3, ge=1, le=1000)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"
    # Convolutional backbones in channels-last layout: "auto" does it on GPUs only (on CPUs the
    # layout can change the last bits of the results, and the default run must not move).
    channels_last: Literal["auto", "on", "off"] = "auto"
    # torch.compile each fine-tuned backbone's forward (first epoch pays the compilation).
    compile: bool = False
    out: Path | None = None
    data_root: Path | None = None
    num_workers: int = Field(0, ge=0, le=256)
    # A split whose uint8 pixels fit in this many MB is decoded once and stored (on the GPU when
    # it fits there too); a larger one is streamed by the loader workers. Same numbers either way.
    store_max_mb: int = Field(1024, ge=0)
    eval_batch_size: int = Field(256, ge=1)
    skip_bad_images: bool = False
    deterministic: bool = True
    keep_checkpoints: bool = False
    report: bool = True
    # Pretrained features of each split kept on disk under $LPFT_HOME/features and reused.
    feature_cache: bool = True
    # Whether the --quick profile is part of this configuration (so a resume does not apply it
    # a second time).
    quick: bool = False
    # Also select on OOD validation (benchmarks that have it), reported apart as oracle rows.
    oracle: bool = False
    launcher: LauncherOptions = Field(default_factory=LauncherOptions)
    tracking: TrackingOptions = Field(default_factory=TrackingOptions)

    @field_validator("model")
    @classmethod
    def _known_model(cls, spec: str) -> str:
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
        if not value:
            raise ValueError("at least one method is required")
        methods: dict[str, BaseModel] = {}
        for name, options in value.items():
            validated = _validated_method_options(name, options)
            methods[name] = validated
            for companion, settings in method_class(name)().companions(name, validated).items():
                if companion not in value:
                    methods[companion] = _validated_method_options(companion, settings)
        return methods

    @model_validator(mode="after")
    def _requirements_serve(self) -> RunConfig:
        """Each method's requirements, as this run configures them, can serve it (before any
        work: ``Method.check_requirements``)."""
        for name, options in self.methods.items():
            method_class(name)().check_requirements(options, self.method_options)
        return self

    @model_validator(mode="after")
    def _known_benchmark_options(self) -> RunConfig:
        options_model = BENCHMARKS.get(self.benchmark).options_model
        try:
            validate_options(
                options_model, self.benchmark_options, "config", prefix=("benchmark_options",)
            )
        except ConfigError as exc:
            raise ConfigError(f"{exc} (benchmark '{self.benchmark}')") from None
        return self

    def method_options(self, name: str) -> BaseModel:
        """Options for ``name``; a method that only runs because another requires it gets its
        defaults, with the benchmark's defaults for it (e.g. its learning-rate grid)."""
        if name in self.methods:
            return self.methods[name]
        layer = _benchmark_method_defaults(BENCHMARKS.get(self.benchmark).defaults, [name])
        settings = deep_merge(layer["methods"][name], self._required_settings(name))
        source = f"benchmark '{self.benchmark}' defaults"
        options = validate_options(
            method_class(name).options_model, settings, source, prefix=("methods", name)
        )
        if not self.quick:
            return options
        quick = method_class(name)().quick_options(options)
        return validate_options(
            method_class(name).options_model,
            deep_merge(settings, quick),
            source,
            prefix=("methods", name),
        )

    def _required_settings(self, name: str) -> dict[str, Any]:
        """What the listed methods that require ``name`` set for it
        (``Method.requirement_options``)."""
        settings: dict[str, Any] = {}
        for key, options in self.methods.items():
            implied = method_class(key)().requirement_options(options).get(name, {})
            settings = deep_merge(settings, implied)
        return settings

    def to_plain(self) -> dict[str, Any]:
        data = self.model_dump(mode="json")
        data["methods"] = {n: o.model_dump(mode="json") for n, o in self.methods.items()}
        return data


QUICK_SEEDS = 2


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
    """Seconds-long smoke profile: 2 seeds, and each method's own smaller sweep
    (``Method.quick_options``: e.g. 2 epochs and one learning rate, a coarse C grid)."""
    quick: dict[str, Any] = {"seeds": QUICK_SEEDS, "quick": True, "methods": {}}
    for name, options in raw.get("methods", {}).items():
        method = method_class(name)()
        quick["methods"][name] = method.quick_options(
            method.options_model.model_validate(options or {})
        )
    return deep_merge(raw, quick)


def resolve_config(
    *,
    yaml_path: Path | None = None,
    quick: bool = False,
    overrides: dict[str, Any] | None = None,
    every_method: dict[str, Any] | None = None,
    method_options: dict[str, dict[str, Any]] | None = None,
    lrs: dict[str, list[float]] | None = None,
    base: dict[str, Any] | None = None,
) -> RunConfig:
    """Merge the layers and validate once. Later layers win:

    paper defaults < benchmark defaults < YAML < quick profile < ``overrides`` (flags) <
    ``every_method`` (``--epochs``: each method that has the field) < ``lrs`` (``--lrs``, per
    method) < ``method_options`` (``--set methods.M.KEY=VALUE``).

    ``base`` is the resolved configuration of a run being resumed (its ``config.yaml``): it
    replaces the paper and benchmark layers, and the quick profile is not applied a second time
    when it already is. ``lrs`` and ``method_options`` must name methods of this run: a setting
    for a method that will not run is refused, never dropped.
    """
    file_layer = _normalise_methods(load_yaml_config(yaml_path)) if yaml_path else {}
    override_layer = _normalise_methods(dict(overrides or {}))
    base_layer = _normalise_methods(dict(base or {}))
    source = str(yaml_path) if yaml_path else "config"

    top = deep_merge(deep_merge(base_layer, file_layer), override_layer)
    benchmark = top.get("benchmark", RunConfig.model_fields["benchmark"].default)
    bench_layer = BENCHMARKS.get(benchmark).defaults
    method_names = list(
        override_layer.get("methods")
        or file_layer.get("methods")
        or base_layer.get("methods")
        or bench_layer.get("methods")
        or RunConfig().methods
    )
    for name in method_names:
        method_class(name)

    raw: dict[str, Any] = {"methods": {name: {} for name in method_names}}
    raw = deep_merge(raw, _benchmark_method_defaults(bench_layer, method_names))
    raw = deep_merge(raw, _restrict_methods(base_layer, method_names))
    raw = deep_merge(raw, _restrict_methods(file_layer, method_names))
    wanted = quick or file_layer.get("quick") or override_layer.get("quick")
    if wanted and not base_layer.get("quick"):
        raw = apply_quick_profile(raw)
    raw = deep_merge(raw, _restrict_methods(override_layer, method_names))
    raw = deep_merge(raw, _broadcast_to_methods(every_method or {}, method_names))
    raw = deep_merge(raw, _per_method(lrs or {}, method_names, "lrs", "--lrs"))
    raw = deep_merge(raw, _per_method(method_options or {}, method_names, None, "--set"))
    try:
        return RunConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, RunConfig, source)) from None


def _per_method(
    settings: dict[str, Any], method_names: list[str], field: str | None, flag: str
) -> dict[str, Any]:
    """A layer of per-method settings (``{method: value}``, set as ``field`` when given, else
    ``{method: {key: value}}``), refused for a method that is not part of the run."""
    methods: dict[str, Any] = {}
    for name, value in settings.items():
        if name not in method_names:
            raise ConfigError(
                f"{flag} sets options of method '{name}', which is not in this run "
                f"(methods: {', '.join(method_names)}); add it to --methods or drop the setting"
            )
        if field is not None and field not in method_class(name).options_model.model_fields:
            raise ConfigError(f"{flag} {name}=...: method '{name}' has no option '{field}'")
        methods[name] = {field: value} if field is not None else value
    return {"methods": methods}


def _benchmark_method_defaults(layer: dict[str, Any], method_names: list[str]) -> dict[str, Any]:
    """A benchmark's defaults for ``ft`` also apply to variants such as ``ft@bn-eval``, and to
    methods that take their defaults from it (``Method.defaults_from``, e.g. ``l2sp``)."""
    methods = layer.get("methods") or {}
    layer = {k: v for k, v in layer.items() if k != "methods"}
    layer["methods"] = {}
    for name in method_names:
        base_name = method_base_name(name)
        fallback = method_class(name).defaults_from
        base = dict(methods.get(base_name) or (fallback and methods.get(fallback)) or {})
        layer["methods"][name] = deep_merge(base, methods.get(name) or {})
    return layer


def _broadcast_to_methods(options: dict[str, Any], method_names: list[str]) -> dict[str, Any]:
    methods = {}
    for name in method_names:
        fields = method_class(name).options_model.model_fields
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
