"""Tiny copies of the paper's datasets in their real on-disk formats, and a quick run on them.

Images are a few pixels large; each class has its own mean colour, so a linear probe on any
backbone separates them a little. Writers return the data root they filled.
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
from PIL import Image

from lpft.cli.main import main

RNG_SEED = 0


def class_pixels(label: int, count: int, size: int, seed: int) -> np.ndarray:
    """``count`` RGB images (N, size, size, 3) around a colour that depends on ``label``."""
    rng = np.random.default_rng(seed)
    base = np.array([(37 * label) % 256, (91 * label + 40) % 256, (53 * label + 90) % 256])
    pixels = base + rng.normal(0, 12, (count, size, size, 3))
    return np.clip(pixels, 0, 255).astype(np.uint8)


def write_png(path: Path, label: int, seed: int, size: int = 6) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(class_pixels(label, 1, size, seed)[0]).save(path)


def write_class_folders(split_dir: Path, folders: dict[str, int], per_class: int, seed: int) -> int:
    """``folders`` maps folder name -> label used for the colour; returns the next seed."""
    for name, label in folders.items():
        for i in range(per_class):
            seed += 1
            write_png(split_dir / name / f"img_{i}.JPEG", label, seed)
    return seed


def quick_run(name: str, root: Path, out: Path, *extra: str) -> dict:
    """``lpft run`` with LP and LP-FT, one seed, one epoch, one learning rate, two C values."""
    argv = [
        "run",
        "--benchmark", name,
        "--data-root", str(root),
        "--model", "builtin:tiny-test",
        "--seeds", "1",
        "--epochs", "1",
        "--lrs", "0.001",
        # The methods come from these keys (``--methods`` would replace them).
        "--set", "methods.lp.C=[0.1, 10.0]",
        "--set", "methods.lp.max_iter=20",
        "--set", "methods.lpft.batch_size=16",
        "--device", "cpu",
        "--quiet",
        "--no-report",
        "--out", str(out),
        *extra,
    ]  # fmt: skip
    assert main(argv) == 0
    return json.loads((out / "results.json").read_text())


def check_output(name: str, root: Path, capsys) -> tuple[int, str]:
    capsys.readouterr()
    code = main(["data", "check", name, "--data-root", str(root)])
    return code, capsys.readouterr().out


# CIFAR-10 (python pickle batches), STL-10 (binaries), CIFAR-10.1 (.npy).

CIFAR_LABEL_NAMES = [
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
]  # fmt: skip


def _pickle(path: Path, payload: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as handle:
        pickle.dump(payload, handle)


def cifar_batch(per_class: int, seed: int) -> tuple[np.ndarray, list[int]]:
    labels = [c for c in range(10) for _ in range(per_class)]
    images = np.concatenate([class_pixels(c, per_class, 32, seed + c) for c in range(10)])
    return images.transpose(0, 3, 1, 2).reshape(len(labels), -1), labels


def write_cifar10(root: Path, per_class: int = 2) -> Path:
    directory = root / "cifar-10-batches-py"
    for i in range(1, 6):
        data, labels = cifar_batch(per_class, 100 * i)
        _pickle(directory / f"data_batch_{i}", {"batch_label": f"batch {i}", "data": data,
                                                "labels": labels})  # fmt: skip
    data, labels = cifar_batch(per_class, 900)
    _pickle(directory / "test_batch", {"batch_label": "test", "data": data, "labels": labels})
    _pickle(directory / "batches.meta", {"label_names": CIFAR_LABEL_NAMES})
    return root


def write_stl10_test(root: Path, stl_labels: list[int]) -> Path:
    """``stl_labels`` are 0-based STL-10 classes; images are stored column-major per channel."""
    directory = root / "stl10_binary"
    directory.mkdir(parents=True, exist_ok=True)
    images = np.concatenate(
        [class_pixels(label, 1, 96, 500 + i) for i, label in enumerate(stl_labels)]
    )
    images.transpose(0, 3, 2, 1).tofile(directory / "test_X.bin")
    (np.asarray(stl_labels, dtype=np.uint8) + 1).tofile(directory / "test_y.bin")
    return root


def write_cifar101(root: Path, per_class: int = 2) -> Path:
    directory = root / "cifar10.1"
    directory.mkdir(parents=True, exist_ok=True)
    labels = np.repeat(np.arange(10), per_class)
    images = np.concatenate([class_pixels(c, per_class, 32, 700 + c) for c in range(10)])
    np.save(directory / "cifar10.1_v6_data.npy", images)
    np.save(directory / "cifar10.1_v6_labels.npy", labels.astype(np.int64))
    return root


# ImageNet-style class folders with the real class order (sorted WordNet ids).

TENCH, GOLDFISH, TOILET_TISSUE = "n01440764", "n01443537", "n15075141"  # classes 0, 1 and 999


def imagenet_wnids() -> list[str]:
    """1000 sorted ids: the real first two and last, and 997 stand-ins that sort between them."""
    return [TENCH, GOLDFISH, *(f"n{2000000 + i:08d}" for i in range(997)), TOILET_TISSUE]


def write_imagenet(root: Path, wnids: list[str], train_per_class: int = 2) -> Path:
    folders = {wnid: i for i, wnid in enumerate(wnids)}
    seed = write_class_folders(root / "imagenet" / "train", folders, train_per_class, 0)
    write_class_folders(root / "imagenet" / "val", folders, 1, seed)
    return root


# BREEDS hierarchy files over a handful of ImageNet-style classes.


def write_breeds_hierarchy(
    directory: Path, edges: list[tuple[str, str]], leaves: list[str]
) -> None:
    """``leaves`` are ImageNet classes (numbered by position); every node gets a name."""
    directory.mkdir(parents=True, exist_ok=True)
    info = [[number, wnid, f"class {wnid}"] for number, wnid in enumerate(leaves)]
    (directory / "dataset_class_info.json").write_text(json.dumps(info))
    (directory / "class_hierarchy.txt").write_text("".join(f"{p} {c}\n" for p, c in edges))
    nodes = dict.fromkeys(n for edge in edges for n in edge)
    (directory / "node_names.txt").write_text("".join(f"{n}\tnode {n}\n" for n in nodes))


# DomainNet: per-domain image folders and official "path label" list files.

DOMAINNET_LABELS = {"airplane": 1, "zebra": 344, "donut": 92, "cat": 60}  # official 345-way ids


def write_domainnet(root: Path, classes: list[str], per_class: int = 2) -> Path:
    """Every domain's train and test lists over ``classes`` plus one class outside the subset."""
    base = root / "domainnet"
    seed = 0
    for domain in ("sketch", "real", "painting", "clipart"):
        for part in ("train", "test"):
            lines = []
            for index, name in enumerate([*classes, "zebra"]):
                for i in range(per_class):
                    seed += 1
                    relative = f"{domain}/{name}/{domain}_{part}_{index:03d}_{i}.jpg"
                    write_png(base / relative, index, seed)
                    lines.append(f"{relative} {DOMAINNET_LABELS.get(name, index)}\n")
            (base / f"{domain}_{part}.txt").write_text("".join(lines))
    return root


# FMoW-WILDS v1.1: metadata CSVs and images/rgb_img_<row>.png, as WILDS downloads them.

FMOW_COUNTRIES = {"USA": "Americas", "BRA": "Americas", "NGA": "Africa", "KEN": "Africa",
                  "FRA": "Europe", "CHN": "Asia"}  # fmt: skip
# WILDS' official split by time: ID before 2013, OOD val 2013-2015, OOD test from 2016.
FMOW_PARTS = {"train": ("train", 2010), "id_val": ("val", 2011), "id_test": ("test", 2012),
              "ood_val": ("val", 2014), "ood_test": ("test", 2017)}  # fmt: skip


def write_fmow(root: Path, rows: list[tuple[str, str, int]]) -> Path:
    """``rows`` are (part of FMOW_PARTS, country code, label); the row number is the image id."""
    from wilds.datasets.fmow_dataset import categories

    base = root / "fmow_v1.1"
    (base / "images").mkdir(parents=True, exist_ok=True)
    (base / "RELEASE_v1.1.txt").write_text("v1.1\n")
    mapping = "".join(f"{code},{region}\n" for code, region in FMOW_COUNTRIES.items())
    (base / "country_code_mapping.csv").write_text("alpha-3,region\n" + mapping)
    lines = ["split,img_filename,category,country_code,timestamp\n"]
    for index, (part, country, label) in enumerate(rows):
        split, year = FMOW_PARTS[part]
        lines.append(f"{split},img_{index}.jpg,{categories[label]},{country},"
                     f"{year}-06-01T10:00:00Z\n")  # fmt: skip
        write_png(base / "images" / f"rgb_img_{index}.png", label, index, size=8)
    (base / "rgb_metadata.csv").write_text("".join(lines))
    return root
