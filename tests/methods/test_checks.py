"""``Method.check``: what the options and the built backbone already rule out is refused before
any work: no feature is extracted, no cell trained, no run directory left behind."""

from __future__ import annotations

from pathlib import Path

import pytest

from lpft.config import resolve_config
from lpft.data import lpft_home
from lpft.errors import ConfigError
from lpft.models import BUILTIN_BACKBONES, Backbone
from lpft.run.runner import Runner
from tiny_benchmark import tiny_backbone


class NoEmbedding(Backbone):
    """A tiny backbone that names neither its embedding nor its blocks."""

    def __init__(self) -> None:
        super().__init__()
        self.inner = tiny_backbone()
        self.feature_dim = self.inner.feature_dim
        self.input_spec = self.inner.input_spec

    def forward(self, x):
        return self.inner(x)

    def blocks(self):
        return {}


BUILTIN_BACKBONES.register("tiny-no-embedding")(NoEmbedding)

REFUSED = {
    "zeroshot-without-text-tower": (
        {"lp": {}, "ft": {"head_init": "zeroshot"}},
        "builtin:tiny-test",
        "ft: head_init: zeroshot needs a backbone with a text tower",
    ),
    "unknown-surgical-block": (
        {"lp": {}, "ft": {}, "surgical": {"block": "nosuch"}},
        "builtin:tiny-test",
        "surgical: block 'nosuch' is not a block of GlyphResNet",
    ),
    "freeze-embed-without-embedding": (
        {"lp": {}, "freeze-embed": {}},
        "builtin:tiny-no-embedding",
        "NoEmbedding does not name its stem",
    ),
    "surgical-without-blocks": (
        {"lp": {}, "surgical": {}},
        "builtin:tiny-no-embedding",
        "surgical: backbone NoEmbedding names no blocks",
    ),
}


@pytest.mark.parametrize("case", list(REFUSED))
def test_refused_before_any_feature_is_extracted(
    case: str, tiny_overrides: dict, tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.setenv("LPFT_HOME", str(tmp_path / "home"))
    methods, model, message = REFUSED[case]
    tiny_overrides.update(methods=methods, model=model)
    runner = Runner(resolve_config(overrides=tiny_overrides), quiet=True)
    with pytest.raises(ConfigError, match=message):
        runner.run()
    features = lpft_home() / "features"
    assert not features.exists() or not any(features.iterdir())
    assert not Path(tiny_overrides["out"]).exists()
