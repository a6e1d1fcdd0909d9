"""``domainnet`` on a tiny copy with official list files: the 40-class SENTRY subset."""

from __future__ import annotations

from pathlib import Path

from lpft.data import BuildContext, create_benchmark
from lpft.data.domainnet import SENTRY_CLASSES
from paper_data import check_output, quick_run, write_domainnet


def test_forty_classes_relabelled_in_sentry_order(tmp_path: Path, capsys) -> None:
    root = write_domainnet(tmp_path / "data", SENTRY_CLASSES)
    benchmark = create_benchmark("domainnet", {}, BuildContext(root, tmp_path / "cache", False))
    assert benchmark.num_classes == 40
    assert set(benchmark.ood) == {"real", "painting", "clipart"}
    real = benchmark.ood["real"].dataset
    assert sorted(set(real.labels)) == list(range(40)) and len(real) == 80  # no zebra
    by_class = {Path(path).parent.name: label for path, label in real.samples}
    assert by_class["airplane"] == 0 and by_class["donut"] == 39 and by_class["butterfly"] == 36
    assert all("/sketch/" in path for path, _ in benchmark.id_train.samples)
    assert len(benchmark.id_train) + len(benchmark.id_val) == 80 and len(benchmark.id_val) == 40

    code, out = check_output("domainnet", root, capsys)
    assert code == 0 and "ood:clipart" in out and "80 images, 40 classes" in out
    results = quick_run("domainnet", root, tmp_path / "run")
    assert results["benchmark"]["augment"] == "resize_crop_flip"
    assert set(results["methods"]["lpft"]["summary"]["ood"]) == {"real", "painting", "clipart"}


def test_a_listed_file_that_is_absent_is_malformed(tmp_path: Path, capsys) -> None:
    root = write_domainnet(tmp_path / "data", SENTRY_CLASSES, per_class=1)
    missing = root / "domainnet" / "painting" / "cat" / "painting_test_018_0.jpg"
    missing.unlink()
    code, out = check_output("domainnet", root, capsys)
    assert code == 2 and "malformed" in out and str(missing) in out
