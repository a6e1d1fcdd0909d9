"""What the feature cache's key covers beyond data, weights and transform."""

from __future__ import annotations

from pathlib import Path

from test_feature_cache import image_loads, lp_run, private_home  # noqa: F401 (fixtures)


def test_channels_last_features_are_not_served_to_a_default_run(
    tmp_path: Path, private_home: Path, image_loads: list[int]  # noqa: F811
) -> None:
    """Channels-last convolutions give slightly different features: a separate cache entry."""
    lp_run(tmp_path, "channels-last", channels_last="on")
    image_loads.clear()
    lp_run(tmp_path, "default")
    assert image_loads, "the default-layout run extracted its own features"
    image_loads.clear()
    lp_run(tmp_path, "default-again")
    assert image_loads == []


