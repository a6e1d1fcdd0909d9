"""``fmow``: FMoW-WILDS v1.1, trained on the Americas, tested on Africa and Europe.

Layout under ``--data-root`` (what WILDS downloads)::

    fmow_v1.1/RELEASE_v1.1.txt  rgb_metadata.csv  country_code_mapping.csv  images/rgb_img_<i>.png

The data is read through the ``wilds`` package (``pip install 'lpft[wilds]'``), never downloaded:
WILDS' official split by time (train / id_val / id_test before 2013, OOD val 2013-2015, OOD test
from 2016) is kept and each part is restricted to regions. ID: the Americas in train, id_val and
id_test. OOD: ``africa`` and ``europe`` from WILDS' OOD test split; their twins from the OOD val
split are the benchmark's ``ood_val`` sets. Every split is scored by accuracy and WILDS'
``worst_region`` accuracy (the lowest over the regions it holds, region 'Other' left out). Paper
protocol: no augmentation, 50 epochs; 62 classes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import numpy as np
from PIL import Image
from pydantic import BaseModel, ConfigDict, Field
from torch.utils.data import Dataset

from lpft.data.benchmark import Benchmark, BuildContext, EvalSplit, Requirement, register_benchmark
from lpft.data.fingerprint import files_fingerprint
from lpft.data.metrics import default_metrics, worst_group_accuracy
from lpft.data.ondisk import paper_defaults
from lpft.errors import ConfigError, DataError

FMOW_DIR = "fmow_v1.1"
FMOW_FILES = ("RELEASE_v1.1.txt", "rgb_metadata.csv", "country_code_mapping.csv")
REGIONS = ("Asia", "Europe", "Africa", "Americas", "Oceania", "Other")
UNSCORED_REGION = "Other"
GET_FMOW = (
    "FMoW-WILDS v1.1 from https://wilds.stanford.edu/downloads (or, with lpft[wilds] installed, "
    "python -c \"import wilds; wilds.get_dataset('fmow', root_dir='DATA_ROOT', download=True)\")"
)
Region = Literal["Asia", "Europe", "Africa", "Americas", "Oceania", "Other"]


class FmowOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    augment: Literal["none", "rrc_flip", "resize_crop_flip"] = "none"
    id_regions: list[Region] = Field(default_factory=lambda: ["Americas"], min_length=1)
    ood_regions: dict[str, list[Region]] = Field(
        default_factory=lambda: {"africa": ["Africa"], "europe": ["Europe"]}, min_length=1
    )


def fmow_layout(root: Path, options: FmowOptions) -> list[Requirement]:
    base = root / FMOW_DIR
    ood = tuple(f"ood:{name}" for name in options.ood_regions)
    ood_val = tuple(f"ood_val:{name}" for name in options.ood_regions)
    every = ("id_train", "id_val", "id_test", *ood, *ood_val)
    return [
        *(Requirement(base / name, every, GET_FMOW, "file") for name in FMOW_FILES),
        Requirement(base / "images", every, GET_FMOW),
    ]


class WildsImages(Dataset):
    """Examples ``indices`` of a WILDS dataset as (PIL image, label)."""

    def __init__(self, dataset: Any, indices: np.ndarray, labels: np.ndarray) -> None:
        self.dataset = dataset
        self.indices = indices
        self.labels = labels

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int) -> tuple[Image.Image, int]:
        return self.dataset.get_input(int(self.indices[index])), int(self.labels[index])

    def fingerprint(self) -> str | None:
        """The image files WILDS reads for these examples (``images/rgb_img_<i>.png``, ``i``
        its ``full_idxs`` entry) and their labels; None if this WILDS version has no
        ``full_idxs``. Metadata edits that move no image and no label do not count."""
        full_indices = getattr(self.dataset, "full_idxs", None)
        if full_indices is None:
            return None
        images = Path(self.dataset.data_dir) / "images"
        paths = [images / f"rgb_img_{full_indices[i]}.png" for i in self.indices]
        return files_fingerprint(paths, self.labels.tolist())


def load_wilds_fmow(root: Path) -> Any:
    try:
        import wilds
    except ImportError:
        raise ConfigError(
            "benchmark 'fmow' reads data with the wilds package: pip install 'lpft[wilds]'"
        ) from None
    try:
        return wilds.get_dataset("fmow", version="1.1", root_dir=str(root), download=False)
    except (OSError, KeyError, ValueError) as exc:
        raise DataError(
            f"{root / FMOW_DIR}: WILDS cannot read it ({type(exc).__name__}: {exc})"
        ) from None


@register_benchmark(
    "fmow", options_model=FmowOptions, defaults=paper_defaults(50), layout=fmow_layout
)
def build_fmow(context: BuildContext, options: FmowOptions) -> Benchmark:
    dataset = load_wilds_fmow(Path(context.data_root).expanduser())
    split_ids = np.asarray(dataset.split_array)
    labels = np.asarray(dataset.y_array)
    region_names = np.array(dataset.metadata_map["region"])
    regions = region_names[np.asarray(dataset.metadata_array[:, 0])]

    def part(split: str, wanted: list[str]) -> tuple[WildsImages, np.ndarray]:
        chosen = np.flatnonzero((split_ids == dataset.split_dict[split]) & np.isin(regions, wanted))
        if len(chosen) == 0:
            raise DataError(
                f"{dataset.data_dir}: WILDS split '{split}' has no images from {wanted}"
            )
        return WildsImages(dataset, chosen, labels[chosen]), regions[chosen]

    def scored(split: str, wanted: list[str]) -> EvalSplit:
        images, their_regions = part(split, wanted)
        metrics = default_metrics() | {
            "worst_region": worst_group_accuracy("region", ignore=(UNSCORED_REGION,))
        }
        return EvalSplit(images, metrics=metrics, metadata={"region": list(their_regions)})

    id_test = scored("id_test", options.id_regions)
    return Benchmark(
        name="fmow",
        classes=fmow_categories(dataset),
        id_train=part("train", options.id_regions)[0],
        id_val=part("id_val", options.id_regions)[0],
        id_test=id_test.dataset,
        id_test_scoring=id_test,
        ood={name: scored("test", wanted) for name, wanted in options.ood_regions.items()},
        ood_val={name: scored("val", wanted) for name, wanted in options.ood_regions.items()},
        augment=options.augment,
        info={"data_root": str(dataset.data_dir), "wilds_split_scheme": "official"},
    )


def fmow_categories(dataset: Any) -> list[str]:
    """The 62 category names in label order."""
    return sorted(dataset.category_to_idx, key=dataset.category_to_idx.__getitem__)
