"""The commands of benchmarks/README.md at tiny sizes: each prints its numbers, the PyTorch references compute the
same functions as ours (the check every --vs-torch run prints), and a bad case is one error line. No timing is
asserted: these numbers only have to exist and be positive. The runs against PyTorch and the GPU script's dry run
(which compiles six PASN steps) take minutes: they are marked slow (`make test-slow`, run by CI)."""

import os
import re
import subprocess
import sys

import pytest

from runs import REPO

TINY = ["--batch", "4", "--pairs", "1", "--steps", "1", "--retries", "0"]
IMG_S = re.compile(r": ([0-9.]+) img/s, ([0-9.]+) GFLOP/img")
SAME = re.compile(r"max \|ours - torch\| = ([0-9.e+-]+)")


def _run(*args, check=True):
    env = dict(os.environ, PYTHON=sys.executable)
    proc = subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    if check:
        assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def _assert_measured(stdout: str, lines: int):
    rates = IMG_S.findall(stdout)
    assert len(rates) == lines, stdout
    assert all(float(img_s) > 0 and float(gflop) > 0 for img_s, gflop in rates), stdout
    assert stdout.startswith("machine: "), stdout


@pytest.mark.slow
def test_train_step_against_torch_is_the_same_network():
    out = _run(sys.executable, "-m", "benchmarks.train_step", "--cases", "resnet50@32", *TINY, "--vs-torch").stdout
    _assert_measured(out, 1)
    differences = [float(d) for d in SAME.findall(out)]
    assert len(differences) == 1 and max(differences) <= 1e-4, out
    assert "ours/torch per pair" in out, out


@pytest.mark.slow
def test_pasn_inference_against_torch_is_the_same_function():
    out = _run(sys.executable, "-m", "benchmarks.inference", "--cases", "iresnet18@32", *TINY, "--vs-torch").stdout
    _assert_measured(out, 1)
    differences = [float(d) for d in SAME.findall(out)]
    assert len(differences) == 1 and max(differences) <= 1e-4, out


@pytest.mark.slow
def test_gpu_script_dry_run_on_the_cpu():
    out = _run("bash", "benchmarks/gpu.sh", "--dry-run").stdout
    _assert_measured(out.split("\n", 1)[1], 6)  # 3 sections x batch 4, 8 (machine line after the first header)
    assert out.count("MFU ") == 6, out


def test_data_benchmarks_print_their_rates():
    render = _run(sys.executable, "-m", "benchmarks.synthetic_render", "--videos", "2", "--frames", "10",
                  "--size", "48").stdout
    assert re.search(r"@48px: \d+ frames .* = \d+ frames/s on one core", render), render
    pipe = _run(sys.executable, "-m", "benchmarks.input_pipeline", "--batch-size", "8", "--batches", "2").stdout
    assert len(re.findall(r"one thread: \d+ img/s; train_dataset \(batch 8, workers 0\): \d+ img/s", pipe)) == 2, pipe


@pytest.mark.parametrize("script", ["train_step", "inference"])
def test_a_bad_case_is_one_error_line(script):
    proc = _run(sys.executable, "-m", f"benchmarks.{script}", "--cases", "vgg16@112", check=False)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "error: --cases: expected BACKBONE@SIZE with BACKBONE in ['iresnet100', 'iresnet18', 'iresnet34', "
        "'iresnet50', 'resnet50'], got 'vgg16@112'"], proc.stderr


def test_predict_benchmark_prints_its_rate():
    out = _run(sys.executable, "-m", "benchmarks.predict", "--width", "320", "--height", "180", "--frames", "4",
               "--batch", "4").stdout
    assert out.startswith("machine: "), out
    rate = re.search(r"predict 320x180, 4 frames, 4 faces, PASN iresnet18 width 16 @64 \w+ \(random demo\), "
                     r"batch 4: ([0-9.]+) frames/s end to end", out)
    assert rate and float(rate.group(1)) > 0, out
