"""``living17`` and ``entity30`` on a tiny hierarchy laid out like BREEDS' files.

The hierarchy: entity (level 0) -> n00000001 -> living thing n00004258 (2) -> n00000003 (3) ->
two level-4 nodes, each with two level-5 nodes of four ImageNet classes. Living-17's rule (level
5 under 'living thing', 4 classes each) finds the four level-5 nodes; Entity-30's (level 4, 8
classes each) the two level-4 nodes. A decoy n00000060 hangs below n00000001 (depth 2) and below
n00000003 (depth 4): BREEDS' level is the longest path, 4, and with two classes it is too small.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from lpft.data import BuildContext, create_benchmark
from lpft.data.breeds import SPLIT_SEED, read_hierarchy
from paper_data import check_output, quick_run, write_breeds_hierarchy, write_class_folders

LEVEL4 = ["n00000040", "n00000041"]
LEVEL5 = {"n00000040": ["n00000050", "n00000051"], "n00000041": ["n00000052", "n00000053"]}


def leaves_of(node: str) -> list[str]:
    index = int(node[-1])
    return [f"n0100{index}{k:03d}" for k in range(4)]


def tiny_hierarchy() -> tuple[list[tuple[str, str]], list[str]]:
    edges = [("n00001740", "n00000001"), ("n00000001", "n00004258"), ("n00004258", "n00000003")]
    leaves = []
    for upper in LEVEL4:
        edges.append(("n00000003", upper))
        for node in LEVEL5[upper]:
            edges.append((upper, node))
            edges += [(node, leaf) for leaf in leaves_of(node)]
            leaves += leaves_of(node)
    # The decoy: reachable at depth 2 and, through n00000003, at depth 4.
    edges += [("n00000001", "n00000060"), ("n00000003", "n00000060"), ("n00000060", "n09999999")]
    edges += [("n00000060", "n09999998")]
    leaves += ["n09999999", "n09999998"]
    return edges, sorted(leaves)


def write_breeds(root: Path) -> Path:
    edges, leaves = tiny_hierarchy()
    write_breeds_hierarchy(root / "breeds", edges, leaves)
    folders = {wnid: i for i, wnid in enumerate(leaves)}
    seed = write_class_folders(root / "imagenet" / "train", folders, 3, 0)
    write_class_folders(root / "imagenet" / "val", folders, 2, seed)
    return root


def build(name: str, root: Path):
    return create_benchmark(name, {}, BuildContext(root, root / ".cache", False))


def wnids_of(dataset) -> set[str]:
    return {Path(path).parent.name for path, _ in dataset.samples}


def test_living17_rand_split_follows_breeds(tmp_path: Path, capsys) -> None:
    root = write_breeds(tmp_path / "data")
    benchmark = build("living17", root)
    level5 = sorted(n for nodes in LEVEL5.values() for n in nodes)
    assert benchmark.classes == [f"node {n}" for n in level5]
    # robustness draws each superclass's split in order from RandomState(2); the first one:
    rng = np.random.RandomState(SPLIT_SEED)
    first = [str(w) for w in rng.choice(leaves_of("n00000050"), 4, replace=False)]
    label0_train = {Path(p).parent.name for p, label in benchmark.id_train.samples if label == 0}
    label0_val = {Path(p).parent.name for p, label in benchmark.id_val.samples if label == 0}
    assert label0_train | label0_val == set(first[:2])
    target0 = {Path(p).parent.name for p, label in benchmark.ood["target"].dataset.samples
               if label == 0}  # fmt: skip
    assert target0 == set(first[2:])
    # ID train images come from train/, ID test and OOD from val/; source and target disjoint.
    assert all("/train/" in p for p, _ in benchmark.id_train.samples)
    assert all("/val/" in p for p, _ in benchmark.id_test.samples)
    assert wnids_of(benchmark.id_test) == wnids_of(benchmark.id_train) | wnids_of(benchmark.id_val)
    assert not wnids_of(benchmark.id_test) & wnids_of(benchmark.ood["target"].dataset)
    assert len(benchmark.ood["target"].dataset) == 4 * 2 * 2

    code, out = check_output("living17", root, capsys)
    assert code == 0 and "ood:target" in out and "16 images, 4 classes" in out
    results = quick_run("living17", root, tmp_path / "run")
    assert results["benchmark"]["augment"] == "rrc_flip"
    assert "target" in results["methods"]["lpft"]["summary"]["ood"]


def test_entity30_uses_level_four_with_eight_classes(tmp_path: Path, capsys) -> None:
    root = write_breeds(tmp_path / "data")
    benchmark = build("entity30", root)
    assert benchmark.classes == [f"node {n}" for n in LEVEL4]
    source = wnids_of(benchmark.id_test)
    target = wnids_of(benchmark.ood["target"].dataset)
    assert len(source) == len(target) == 8 and not source & target
    assert "n09999999" not in source | target  # the decoy's level is 4 but it has 2 classes
    results = quick_run("entity30", root, tmp_path / "run")
    assert results["benchmark"]["sizes"]["id_test"] == 16


def test_longest_path_decides_the_level(tmp_path: Path) -> None:
    edges, leaves = tiny_hierarchy()
    write_breeds_hierarchy(tmp_path, edges, leaves)
    hierarchy, _ = read_hierarchy(tmp_path)
    levels = hierarchy.levels("n00001740")
    assert levels["n00000060"] == 4 and levels["n00000050"] == 5 and levels["n09999999"] == 5
