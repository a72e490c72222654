"""The accelerator requirement files resolve against the package index with the runtime pins (`pip install
--dry-run`: nothing is installed): the jax plugin of the pinned jax version exists for CUDA 12, CUDA 13 and TPU.
Slow-marked (each resolution fetches the plugins' metadata): run by CI (`make test-slow`)."""

import os
import subprocess
import sys

import pytest
from runs import REPO

PLUGINS = {"cuda12": "jax-cuda12-plugin-0.10.2", "cuda13": "jax-cuda13-plugin-0.10.2", "tpu": "libtpu-"}


@pytest.mark.slow
@pytest.mark.parametrize("accelerator", sorted(PLUGINS))
def test_accelerator_requirements_resolve(accelerator):
    path = os.path.join(REPO, f"requirements-{accelerator}.txt")
    proc = subprocess.run([sys.executable, "-m", "pip", "install", "--dry-run", "--disable-pip-version-check",
                           "-r", path], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    lines = [line for line in proc.stdout.splitlines() if line.startswith("Would install")]
    assert lines and PLUGINS[accelerator] in lines[0], proc.stdout[-3000:]
    assert "jax-0.10.2" not in lines[0] and "jaxlib-" not in lines[0]  # the pinned jax stays: only the plugin is new
