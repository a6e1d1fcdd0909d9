"""Benchmarks: ``create_benchmark(name, options, context)`` and the ``BENCHMARKS`` registry.

Add a benchmark with ``@register_benchmark("name", options_model=..., defaults=...)`` on a
builder function in a module imported below.
"""

from lpft.data import breeds, cifar, digits_shift, domainnet, fmow, folder, imagenet
from lpft.data.benchmark import (
    BENCHMARKS,
    Benchmark,
    BuildContext,
    EvalSplit,
    benchmark_defaults,
    create_benchmark,
    register_benchmark,
    validate_benchmark_options,
)
from lpft.data.cache import lpft_home
from lpft.data.fingerprint import dataset_fingerprint
from lpft.data.transforms import build_transform

__all__ = [
    "BENCHMARKS",
    "Benchmark",
    "BuildContext",
    "EvalSplit",
    "benchmark_defaults",
    "breeds",
    "build_transform",
    "cifar",
    "create_benchmark",
    "dataset_fingerprint",
    "digits_shift",
    "domainnet",
    "fmow",
    "folder",
    "imagenet",
    "lpft_home",
    "register_benchmark",
    "validate_benchmark_options",
]
