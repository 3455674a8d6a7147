"""The trainer's NCCL sender without a GPU: argument checks, and that it imports without torch or vLLM.

The transfer itself is in tests/gpu/test_inference_nccl_gpu.py; the service refusing it on a CPU engine in
tests/service/test_inference_service.py.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from ghpo.trainer.train.push_nccl import check_nccl_args

GOOD = {
    "tensors": {"w": object()},
    "version": 3,
    "master_port": 29500,
    "timeout_s": 60.0,
    "bucket_bytes": 1 << 26,
}


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("tensors", {}),
        ("version", 0),
        ("master_port", 0),
        ("master_port", 65536),
        ("timeout_s", 0.0),
        ("timeout_s", 7200.0),
        ("bucket_bytes", 1024),
    ],
)
def test_a_bad_argument_is_refused_naming_it(name, value):
    with pytest.raises(ValueError, match=f"^{name}: "):
        check_nccl_args(**{**GOOD, name: value})


def test_good_arguments_pass():
    check_nccl_args(**GOOD)


def test_the_nccl_modules_import_without_torch_or_vllm():
    code = (
        "import sys\n"
        "import ghpo.trainer.train.push_nccl, ghpo.services.inference.nccl_api\n"
        "import ghpo.services.inference.app\n"
        "print(sorted(m for m in ('torch', 'vllm') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
