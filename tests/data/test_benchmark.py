"""The checks every benchmark passes when it is built."""

from __future__ import annotations

import numpy as np
import pytest

from lpft.data import Benchmark, EvalSplit
from lpft.errors import DataError
from tests_support import ArrayImages


def images(count: int) -> ArrayImages:
    return ArrayImages(np.zeros((count, 8, 8), np.uint8), np.zeros(count, np.int64))


def test_an_empty_split_is_refused_by_name() -> None:
    with pytest.raises(DataError, match="benchmark 'b': split night has no examples"):
        Benchmark("b", ["c"], images(2), images(2), images(2), {"night": EvalSplit(images(0))})
