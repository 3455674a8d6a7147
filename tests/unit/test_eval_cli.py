"""`ghpo eval` refuses bad flags with an error naming the flag, before loading any model."""

from __future__ import annotations

import pytest

from ghpo.cli import build_parser
from ghpo.commands.eval import build_config
from ghpo.errors import CliError

URL = ["--inference-url", "http://127.0.0.1:1"]  # never contacted: build_config only checks flags


def config(*argv: str):
    return build_config(build_parser().parse_args(["eval", *argv]))


@pytest.mark.parametrize(
    ("argv", "flag"),
    [
        (["--benchmarks", "math500,gsm8k"], "--benchmarks"),
        (["--benchmarks", ","], "--benchmarks"),
        (["--k", "0"], "--k"),
        (["--k", "2", "--pass-k", "3"], "--pass-k"),
        (["--temperature", "-1"], "--temperature"),
        (["--max-tokens", "0"], "--max-tokens"),
        (["--limit", "0"], "--limit"),
        (["--arith-per-level", "0"], "--arith-per-level"),
        (["--arith-levels", "0-3"], "--arith-levels"),
        (["--arith-levels", "one"], "--arith-levels"),
        (["--verifier-url", "localhost:8101"], "--verifier-url"),
        (["--out", "/no/such/folder/r.json"], "--out"),
    ],
)
def test_bad_flag_is_refused_naming_the_flag(argv, flag):
    with pytest.raises(CliError, match=flag):
        config(*URL, *argv)


def test_model_and_inference_url_together_are_refused(tmp_path):
    with pytest.raises(CliError, match="--model"):
        config(*URL, "--model", str(tmp_path))


def test_model_folder_without_config_is_refused(tmp_path):
    with pytest.raises(CliError, match=r"--model.*config\.json"):
        config("--model", str(tmp_path))


def test_good_flags_resolve_into_the_config():
    c = config(
        *URL, "--benchmarks", "arith,amc23,arith", "--arith-levels", "1-3,5", "--k", "4", "--seed", "7"
    )

    assert c.benchmarks == ("arith", "amc23")
    assert c.arith_levels == (1, 2, 3, 5)
    assert c.k == 4 and c.pass_k == 4 and c.seed == 7
    assert c.model is None and c.inference_url == URL[1]
