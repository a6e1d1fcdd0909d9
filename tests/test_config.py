"""Configuration: layering, validation messages, and the CLI's exit code 2."""

from __future__ import annotations

from pathlib import Path

import pytest

from lpft.cli.main import main
from lpft.config import parse_set_option, resolve_config
from lpft.errors import ConfigError
from lpft.methods.finetune import PAPER_FT_LRS, FineTuneOptions
from lpft.methods.lp import default_c_grid
from lpft.methods.lpft import PAPER_LPFT_LRS, LPFTOptions


def test_paper_defaults_apply_without_a_benchmark_override() -> None:
    config = resolve_config(overrides={"benchmark": "folder", "methods": "lp,ft,lpft"})
    assert config.methods["ft"].lrs == PAPER_FT_LRS
    assert config.methods["lpft"].lrs == PAPER_LPFT_LRS
    assert config.methods["ft"].batchnorm == "train"
    assert config.methods["lpft"].batchnorm == "eval"
    assert config.methods["lpft"].head_init == "lp"


def test_layers_benchmark_then_yaml_then_overrides(tmp_path: Path) -> None:
    yaml_path = tmp_path / "run.yaml"
    yaml_path.write_text("seeds: 5\nmethods:\n  ft: {epochs: 7}\n")
    config = resolve_config(
        yaml_path=yaml_path, overrides={"methods": {"ft": {"lrs": [0.5]}}}, every_method={}
    )
    ft = config.methods["ft"]
    assert config.seeds == 5 and ft.epochs == 7 and ft.lrs == [0.5]
    assert ft.batch_size == 32  # the digits-shift benchmark default


def test_methods_flag_replaces_the_yaml_method_list(tmp_path: Path) -> None:
    yaml_path = tmp_path / "run.yaml"
    yaml_path.write_text("methods:\n  lp: {}\n  ft: {epochs: 7}\n  lpft: {}\n")
    config = resolve_config(yaml_path=yaml_path, overrides={"methods": "ft"})
    assert list(config.methods) == ["ft"] and config.methods["ft"].epochs == 7


def test_variants_inherit_benchmark_defaults_of_their_method() -> None:
    config = resolve_config(overrides={"methods": {"ft": {}, "ft@bn-eval": {"batchnorm": "eval"}}})
    variant, ft = config.methods["ft@bn-eval"], config.methods["ft"]
    assert isinstance(variant, FineTuneOptions)
    assert (variant.epochs, variant.batch_size) == (ft.epochs, ft.batch_size) == (10, 32)
    assert variant.batchnorm == "eval"


def test_quick_profile_shrinks_the_work() -> None:
    config = resolve_config(quick=True)
    assert config.seeds == 2
    assert all(
        len(o.lrs) == 1 and o.epochs == 2
        for o in config.methods.values()
        if isinstance(o, FineTuneOptions)
    )
    assert isinstance(config.methods["lpft"], LPFTOptions)


def test_quick_profile_shrinks_a_method_that_runs_only_as_a_requirement() -> None:
    config = resolve_config(quick=True, overrides={"methods": ["lpft"]})
    assert default_c_grid()[::3] == config.method_options("lp").C


def test_every_method_options_apply_where_the_field_exists() -> None:
    config = resolve_config(every_method={"epochs": 3, "lrs": [0.1]})
    assert config.methods["ft"].epochs == 3 and config.methods["lpft"].lrs == [0.1]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"methods": {"ft": {"lrz": [0.1]}}}, "unknown key 'methods.ft.lrz'.*did you mean lrs"),
        ({"seedz": 3}, "unknown key 'seedz'.*did you mean seeds"),
        ({"methods": {"ft": {"batchnorm": "frozen"}}}, "methods.ft.batchnorm='frozen'.*'train'"),
        ({"methods": {"ft": {"epochs": 0}}}, r"methods.ft.epochs=0.*greater than or equal to 1"),
        ({"methods": {"ft": {"lrs": [-1.0]}}}, r"methods.ft.lrs.0=-1.0.*greater than 0"),
        ({"methods": "lp,fine-tune"}, "unknown method 'fine-tune'"),
        (
            {"benchmark": "digit-shift"},
            "unknown benchmark 'digit-shift'.*did you mean digits-shift",
        ),
        ({"seeds": 0}, "seeds=0"),
        ({"methods": {"ft": {"lrs": [0.1, 0.1]}}}, r"must be distinct, \[0.1\] repeated"),
        ({"benchmark_options": {"stile": "hard"}}, "unknown key 'benchmark_options.stile'"),
        ({"device": "tpu"}, "device='tpu'"),
    ],
)
def test_bad_values_name_the_key_and_what_is_allowed(overrides: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        resolve_config(overrides=overrides)


def test_bad_yaml_is_one_line_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("seeds: [1,\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: not valid YAML at line"):
        resolve_config(yaml_path=path)
    path.write_text("- just\n- a list\n")
    with pytest.raises(ConfigError, match="expected a mapping"):
        resolve_config(yaml_path=path)


def test_set_option_parses_dotted_keys_and_yaml_values() -> None:
    assert parse_set_option("methods.ft.lrs=[0.1, 0.2]") == {"methods": {"ft": {"lrs": [0.1, 0.2]}}}
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        parse_set_option("seeds")


@pytest.mark.parametrize(
    "argv",
    [
        ["run", "--set", "methods.ft.epochs=0"],
        ["run", "--methods", "lp,fine-tune"],
        ["run", "--model", "nosuch:thing"],
        ["run", "--config", "/does/not/exist.yaml"],
        ["run", "--benchmark", "folder", "--data-root", "/does/not/exist", "--quiet"],
    ],
)
def test_cli_config_errors_exit_2_with_one_line(argv: list[str], capsys, tmp_path: Path) -> None:
    code = main([*argv, "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err.startswith("lpft: error: ") and "\n" not in err
