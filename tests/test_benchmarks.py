"""The commands of benchmarks/README.md at tiny sizes: each prints its numbers, the PyTorch references compute the
same functions as ours (the check every --vs-torch run prints), and a bad case is one error line. No timing is
asserted: these numbers only have to exist and be positive. The runs against PyTorch and the GPU script's dry run
(which compiles six PASN steps) take minutes: they are marked slow (`make test-slow`, run by CI)."""

import json
import os
import re
import subprocess
import sys

import pytest

from runs import REPO

TINY = ["--batch", "4", "--pairs", "1", "--steps", "1", "--retries", "0"]
IMG_S = re.compile(r": ([0-9.]+) img/s, ([0-9.]+) GFLOP/img")
SAME = re.compile(r"max \|ours - torch\| = ([0-9.e+-]+)")


def _run(*args, check=True, env=None):
    env = dict(os.environ, PYTHON=sys.executable, **(env or {}))
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
def test_pasn_train_step_against_torch_computes_the_same_loss():
    out = _run(sys.executable, "-m", "benchmarks.train_step", "--model", "pasn", "--cases", "iresnet18@32", *TINY,
               "--vs-torch").stdout
    _assert_measured(out, 1)
    differences = [float(d) for d in re.findall(r"train-mode loss [0-9.]+, \|ours - torch\| = ([0-9.e+-]+)", out)]
    assert len(differences) == 1 and differences[0] <= 1e-4, out
    assert "ours/torch per pair" in out, out


@pytest.mark.slow
def test_pasn_inference_against_torch_is_the_same_function():
    out = _run(sys.executable, "-m", "benchmarks.inference", "--cases", "iresnet18@32", *TINY, "--vs-torch").stdout
    _assert_measured(out, 1)
    differences = [float(d) for d in SAME.findall(out)]
    assert len(differences) == 1 and max(differences) <= 1e-4, out


@pytest.mark.slow
def test_gpu_script_dry_run_on_the_cpu(tmp_path):
    figures = tmp_path / "gpu.json"
    out = _run("bash", "benchmarks/gpu.sh", "--dry-run", env={"OUT_JSON": str(figures)}).stdout
    _assert_measured(out.split("\n", 1)[1], 4)  # 4 sections, one batch each (machine line after the first header)
    assert out.count("MFU ") == 4, out
    written = json.loads(figures.read_text())  # every printed figure, one JSON
    assert [c["batch"] for c in written["cases"]] == [8, 8, 4, 4], written
    # the PASN step in both kernel forms, the towers in the CPU's ('auto'); inference records none
    assert [c.get("kernels") for c in written["cases"]] == ["portable", "cpu", "cpu", None], written
    assert all(c["img_per_s"] > 0 and c["mfu"] > 0 for c in written["cases"]) and "cores" in written["machine"]
    e2e = written["end_to_end"]  # the smoke config's main run: 6 steps of batch 8, logged every 2
    assert len(e2e["intervals_img_per_s"]) == 3 and e2e["img_per_s"] > 0 and e2e["global_batch"] == 8, e2e
    assert e2e["fraction_of_step_only"] > 0, e2e


def test_data_benchmarks_print_their_rates():
    render = _run(sys.executable, "-m", "benchmarks.synthetic_render", "--videos", "2", "--frames", "10",
                  "--size", "48").stdout
    assert re.search(r"@48px: \d+ frames .* = \d+ frames/s on one core", render), render
    pipe = _run(sys.executable, "-m", "benchmarks.input_pipeline", "--batch-size", "8", "--batches", "2").stdout
    lines = re.findall(r"@(\d+)px workers 0: source read \+ transform, one thread: \d+ img/s; train_dataset "
                       r"\(batch 8\): \d+ img/s = \d+ img/s per core; ([0-9.]+) MiB per batch", pipe)
    # uint8 images and their labels: 8 x 112 x 112 x 3 bytes and 8 x 224 x 224 x 3, plus < 4 KiB of labels
    assert [size for size, _ in lines] == ["112", "224"], pipe
    for size, mib in lines:
        assert 8 * int(size) ** 2 * 3 / 2**20 <= float(mib) < (8 * int(size) ** 2 * 3 + 4096) / 2**20 + 0.01, pipe


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
    rate = re.search(r"predict 320x180, 4 frames, 4 faces, PASN resnet50 width 16 @64 \w+ \(random demo\), "
                     r"batch 4: ([0-9.]+) frames/s end to end with --detect-every 5, ([0-9.]+) searching every", out)
    assert rate and float(rate.group(1)) > 0 and float(rate.group(2)) > 0, out


def test_model_flops_count_convolutions_and_products_forward_and_backward():
    import jax
    import jax.numpy as jnp
    import numpy as np

    from benchmarks import common

    x, k, w = jnp.ones((2, 8, 8, 3)), jnp.ones((3, 3, 3, 4)), jnp.ones((8 * 8 * 4, 5))

    def loss(x, k, w):  # a 3x3 convolution (2*8*8*4 outputs of 27 multiply-adds), then a [2, 256] x [256, 5] product
        y = jax.lax.conv_general_dilated(x, k, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))
        return jnp.sum(jnp.tanh(y.reshape(2, -1) @ w))

    forward = 2 * (2 * 8 * 8 * 4 * 27) + 2 * (2 * 256 * 5)
    assert common.model_flops(loss, x, k, w) == forward
    # backward: each product twice more (input and weight gradients), the input's gradient of x included
    step = jax.jit(jax.grad(loss, argnums=(0, 1, 2)))
    assert common.model_flops(step, x, k, w) == 3 * forward
    # against XLA's CPU cost analysis of the same step (which also counts elementwise work): close, not equal
    cost = step.lower(x, k, w).compile().cost_analysis()
    xla = float((cost[0] if isinstance(cost, list | tuple) else cost)["flops"])
    assert 0.8 < 3 * forward / xla < 1.25, (3 * forward, xla)
    assert np.isfinite(xla)


def test_model_flops_of_a_tower_step_agree_with_xla_on_the_cpu():
    """The IResNet training step (custom gradients of batch norm and the strided convolution included) counted from
    its jaxpr, against XLA's CPU cost analysis of the compiled step: within 10 % (measured 1.08 here; IR-50 @112:
    38.7 against 35.3 GFLOP/img)."""
    import jax
    import jax.numpy as jnp

    from benchmarks import common, train_step
    from pasn_jax import optim
    from pasn_jax.models import pasn, towers

    config = common.pasn_config("iresnet18", 32, "float32")
    config.model.update(width=8, layers=(1, 1, 1, 1), embedding_dim=32)
    module = towers.tower_module(pasn.build_model(config.model))
    images, target = jnp.zeros((4, 32, 32, 3)), jnp.zeros((4, 32))
    variables = jax.jit(lambda k: module.init(k, images[:1], train=False))(jax.random.key(0))
    optimizer, _ = optim.make_optimizer(config.optim, jax.tree.map(lambda _: True, variables["params"]))
    args = (variables["params"], variables["batch_stats"], optimizer.init(variables["params"]), images, target)
    compiled, _, flops = common.compile_with_cost(jax.jit(train_step.tower_step(module, optimizer)), *args)
    cost = compiled.cost_analysis()
    xla = float((cost[0] if isinstance(cost, list | tuple) else cost)["flops"])
    assert 1.0 <= flops / xla < 1.1, (flops, xla)


def test_detector_benchmark_prints_its_rates():
    out = _run(sys.executable, "-m", "benchmarks.detector", "--width", "320", "--height", "180", "--frames", "2",
               "--batch", "2").stdout
    assert out.startswith("machine: "), out
    rates = re.findall(r"detect 320x180, refine_landmarks=(True|False): 1 face\(s\); ([0-9.]+) frames/s one per "
                       r"call, ([0-9.]+) frames/s in batches of 2", out)
    assert [r[0] for r in rates] == ["True", "False"] and all(float(a) > 0 and float(b) > 0 for _, a, b in rates), out
