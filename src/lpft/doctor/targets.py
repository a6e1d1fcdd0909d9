"""Target images without labels: a benchmark's OOD sets with their labels dropped unread, or a
folder of images.

``UnlabeledImages`` hands the probes ``(image, NO_LABEL)``: whatever label the wrapped dataset
returns is discarded at once, never converted, compared or collated, so no computation of the
doctor can depend on it.
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image
from torch.utils.data import Dataset

from lpft.data.folder import IMAGE_EXTENSIONS, decoded_or_problem
from lpft.errors import DataError

NO_LABEL = -1


class UnlabeledImages(Dataset):
    """``dataset``'s images, each with ``NO_LABEL`` in place of its label."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> tuple[Image.Image, int]:
        image = self.dataset[index][0]
        return image, NO_LABEL


class ImageFiles(Dataset):
    """Every image file under a directory (recursively, sorted), decoded once up front."""

    def __init__(self, root: Path) -> None:
        root = Path(root).expanduser()
        if not root.is_dir():
            raise DataError(f"--target {root}: not a directory (expected a folder of images)")
        paths = sorted(
            p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS
        )
        if not paths:
            raise DataError(
                f"--target {root}: no image files (looked for {', '.join(IMAGE_EXTENSIONS)})"
            )
        self.pixels = []
        for path in paths:
            decoded = decoded_or_problem(str(path))
            if isinstance(decoded, str):
                raise DataError(f"--target: cannot decode {path}: {decoded}")
            self.pixels.append(decoded)

    def __len__(self) -> int:
        return len(self.pixels)

    def __getitem__(self, index: int) -> tuple[Image.Image, int]:
        return Image.fromarray(self.pixels[index]), NO_LABEL


def benchmark_targets(ood: dict) -> dict[str, Dataset]:
    """A benchmark's OOD sets (``name -> EvalSplit``) as unlabeled image sets."""
    return {name: UnlabeledImages(split.dataset) for name, split in ood.items()}
