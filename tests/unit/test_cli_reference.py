"""Options a user can discover: `ghpo run --help` names every config section, `--print-config` prints the
whole default config as TOML that reads back to the same config, `ghpo serve SERVICE --help` lists every
variable the service reads with its bounds, and docs/configuration.md is the generated text of today."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from ghpo.cli import main
from ghpo.config_reference import SERVICES, settings_class, with_generated
from ghpo.local.config import RunConfig, load_run_config, parse_run_config
from ghpo.shared.algorithm.config import GHPOConfig
from ghpo.shared.settings import env_name

REPO = Path(__file__).resolve().parents[2]


def help_text(argv: list[str], capsys) -> str:
    with pytest.raises(SystemExit) as done:
        main([*argv, "--help"])
    assert done.value.code == 0
    return capsys.readouterr().out


def test_run_help_names_every_config_section_and_the_print_config_command(capsys):
    text = help_text(["run"], capsys)

    for section in RunConfig.model_fields:
        assert f"  [{section}] " in text, section
    assert "ghpo run --print-config" in text


def test_print_config_is_the_full_default_config_and_reads_back_equal(tmp_path, capsys):
    assert main(["run", "--print-config"]) == 0
    printed = capsys.readouterr().out
    path = tmp_path / "defaults.toml"
    path.write_text(printed)

    data = tomllib.loads(printed)
    assert set(data) == set(RunConfig.model_fields)
    for section, model in ((name, getattr(RunConfig(), name)) for name in RunConfig.model_fields):
        unset = {key for key, value in model.model_dump().items() if value is None}
        assert set(data[section]) | unset == set(type(model).model_fields), section
    assert load_run_config(path) == RunConfig()
    # and a changed value survives the round trip: the file is a config, not a picture of one
    path.write_text(printed.replace("group_size = 8", "group_size = 4"))
    assert load_run_config(path) == parse_run_config({"rollout": {"group_size": 4}})


@pytest.mark.parametrize("service", SERVICES)
def test_serve_help_lists_every_setting_of_the_service_with_its_bounds(service, capsys):
    text = help_text(["serve", service], capsys)
    cls = settings_class(service)

    for key in cls.model_fields:
        if key != "ghpo":
            assert env_name(cls, key) in text, key
    assert f"GHPO_{service.upper()}_PORT\n      int, 1..65535, default" in text
    if "ghpo" in cls.model_fields:  # broker and rollout server take the shared block
        assert all(f"GHPO_ALGORITHM_{key.upper()}" in text for key in GHPOConfig.model_fields)


def test_run_dir_defaults_to_a_timestamped_folder_under_runs_and_resume_needs_one():
    from ghpo.commands.run import default_run_dir

    folder = default_run_dir()
    assert folder.parent == Path("runs") and folder.name[:8].isdigit() and folder.name[8] == "-"
    proc = subprocess.run(
        [sys.executable, "-m", "ghpo", "run", "--resume"], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 2 and "--resume needs --run-dir" in proc.stderr


def test_the_configuration_doc_is_the_generated_text_of_the_models():
    doc = (REPO / "docs" / "configuration.md").read_text()

    assert with_generated(doc) == doc, "regenerate: python -m ghpo.config_reference --write docs/configuration.md"
