"""Grad-CAM on a network whose answer is known, the report's page rendered by a headless browser with every image
loaded, and the pieces it reads (TensorBoard scalars, mass ratios) against independent numbers."""

import json
import os
import re
import shutil
import subprocess

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from tensorboardX import SummaryWriter

from pasn_jax import report, visualize
from pasn_jax.models import pasn


class Block(nn.Module):
    @nn.compact
    def __call__(self, x):
        return nn.relu(nn.Conv(8, (3, 3), strides=4, use_bias=False, name="conv")(x))


class Quadrant(nn.Module):
    """Its outputs read only the top-right quadrant of its last block's activations."""

    @nn.compact
    def __call__(self, images, train=False):
        a = Block(name="block")(images)  # [B, 8, 8, 8]
        h = a.shape[1] // 2
        out = nn.Dense(21, name="head")(a[:, :h, h:].mean(axis=(1, 2)))
        return {"au": out[:, :12], "expr": out[:, 12:19], "va": out[:, 19:]}


def test_grad_cam_finds_the_quadrant_the_network_reads():
    rng = np.random.default_rng(0)
    images = np.zeros((4, 32, 32, 3), np.float32)
    images[:, :16, 16:] = rng.uniform(-1, 1, (4, 16, 16, 3))  # only the top-right quadrant holds a picture
    model = Quadrant()
    variables = model.init(jax.random.key(0), images)
    for task, index in (("expr", 3), ("au", 5), ("va", 1)):
        maps = visualize.grad_cam(model, variables, images, task, index, layer=("block",))
        assert maps.shape == (4, 32, 32) and np.all((maps >= 0) & (maps <= 1 + 1e-6))
        inside = maps[:, :16, 16:].sum() / maps.sum()
        near = maps[:, :20, 12:].sum() / maps.sum()  # one activation cell (4 px) of blur past the quadrant's edges
        assert inside > 0.9 and near > 0.999 and maps[:, 20:, :12].max() == 0, (task, inside, near)

    # The same map computed by hand: the gradient of the output with respect to the block's activations.
    params = variables["params"]
    a = nn.relu(jax.lax.conv_general_dilated(images, params["block"]["conv"]["kernel"], (4, 4), "SAME",
                                             dimension_numbers=("NHWC", "HWIO", "NHWC")))
    logit = lambda act: jnp.sum((act[:, :4, 4:].mean(axis=(1, 2)) @ params["head"]["kernel"]
                                 + params["head"]["bias"])[:, 12 + 3])
    weights = jax.grad(logit)(a).mean(axis=(1, 2))
    cam = jax.image.resize(jax.nn.relu(jnp.einsum("bhwc,bc->bhw", a, weights)), (4, 32, 32), "bilinear")
    expected = cam / cam.max(axis=(1, 2), keepdims=True)
    np.testing.assert_allclose(visualize.grad_cam(model, variables, images, "expr", 3, layer=("block",)), expected,
                               atol=1e-5)


def test_grad_cam_of_pasn_with_and_without_the_prior():
    images = np.random.default_rng(1).uniform(-1, 1, (2, 32, 32, 3)).astype(np.float32)
    for prior in (True, False):
        model = pasn.PASN(backbone="iresnet18", width=8, layers=(1, 1, 1, 1), embedding_dim=32, image_size=32,
                          prior=prior)
        variables = model.init(jax.random.key(0), images)
        assert visualize.cam_layer(model) == (("prior", "f_expr") if prior else ("backbone",)) + ("layer4_0",)
        maps = visualize.grad_cam(model, variables, images, "expr", np.array([0, 4]))
        assert maps.shape == (2, 32, 32) and np.isfinite(maps).all() and maps.max() > 0
    with pytest.raises(ValueError, match="no module prior/f_expr/layer9_0"):
        visualize.grad_cam(model, variables, images, "va", 0, layer=("prior", "f_expr", "layer9_0"))


def test_mass_ratio_by_hand():
    maps = np.zeros((1, 4, 4))
    maps[0, 0, 0], maps[0, 3, 3] = 3.0, 1.0
    masks = np.zeros((1, 4, 4), bool)
    masks[0, :2, :2] = True  # a quarter of the image holding 3/4 of the mass
    assert visualize.mass_ratio(maps, masks) == pytest.approx(3.0)


def test_read_scalars_gives_what_tensorboardx_wrote(tmp_path):
    writer = SummaryWriter(str(tmp_path))
    for step, value in ((10, 1.5), (20, 0.25), (20, 0.5)):
        writer.add_scalar("train/loss", value, step)
    writer.add_scalar("eval/s_au", 0.75, 20)
    writer.close()
    scalars = report.read_scalars(str(tmp_path))
    np.testing.assert_array_equal(scalars["train/loss"][0], [10, 20])
    np.testing.assert_allclose(scalars["train/loss"][1], [1.5, 0.5])  # the last value of a step
    np.testing.assert_allclose(scalars["eval/s_au"][1], [0.75])


def _browser() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def test_report_page_loads_every_image_in_a_headless_browser(smoke_run, tmp_path):
    workdir, _ = smoke_run
    out = str(tmp_path / "report")
    assert report.main(["--workdirs", workdir, workdir, "--names", "first,second", "--out", out, "--frames", "4"]) == 0
    with open(os.path.join(out, "figures.json")) as f:
        written = json.load(f)
    assert {"au_f1.png", "expr_f1.png", "confusion_0.png", "va_1.png", "curves.png", "gradcam_1.png"} <= set(
        written["figures"])
    ratios = written["parts_mass_ratio"]
    assert set(ratios) == {"first", "second"} and ratios["first"] == ratios["second"] > 0
    page = open(os.path.join(out, "index.html")).read()
    assert page.count("<img ") == len(written["figures"]) and "S_EXPR" in page and "chance" in page

    browser = _browser()
    if browser is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is missing: .ci/run installs it (apt-get install chromium)")
        pytest.skip("no chromium here (.ci/run installs it)")
    proc = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--allow-file-access-from-files",
                           "--virtual-time-budget=10000", "--dump-dom", f"file://{out}/index.html"],
                          capture_output=True, text=True, timeout=120)
    body = re.search(r'<body data-images="(\d+)" data-images-loaded="(\d+)"', proc.stdout)
    assert body, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert int(body.group(1)) == int(body.group(2)) == len(written["figures"])


@pytest.mark.slow  # an end-to-end run (~20 s): make test stays in its budget
def test_each_evaluation_logs_the_confusion_matrix_and_a_grad_cam_grid(smoke_cache, tmp_path):
    import glob
    import struct

    from runs import run_main, smoke_args
    from tensorboardX.proto import event_pb2

    workdir = str(tmp_path / "run")
    run_main(smoke_args(workdir, smoke_cache, "--config.num_steps=4", "--config.eval_every=2",
                        "--config.eval.images=4"))
    images = {}
    for path in glob.glob(os.path.join(workdir, "tb", "events.out.tfevents.*")):
        data, pos = open(path, "rb").read(), 0
        while pos < len(data):
            (length,) = struct.unpack("<Q", data[pos:pos + 8])
            event = event_pb2.Event.FromString(data[pos + 12:pos + 12 + length])
            pos += 16 + length
            for value in event.summary.value:
                if value.HasField("image"):
                    images.setdefault(value.tag, []).append(event.step)
    assert images == {"eval/expr_confusion": [2, 4], "eval/gradcam": [2, 4]}
