"""Pictures of a trained PASN: Grad-CAM of the prior's f_expr tower (paper Fig. 4), per-class F1 bars (Fig. 3),
the expression confusion matrix, predicted vs true valence/arousal, and training curves; matplotlib draws them.

Grad-CAM (Selvaraju et al.): for a chosen output y (an AU probability, an expression logit, valence or arousal),
the gradient of y with respect to the last convolutional block's activations A [h, w, C] is averaged over space into
one weight per channel, a_c; the map is relu(sum_c a_c A_c), upsampled bilinearly onto the face and scaled to
[0, 1]. The block is f_expr's last residual block (the single tower's without the prior); its output is read and
perturbed through flax's method interception, so the networks carry no hook.
"""

import functools
import io

import flax.linen as nn
import jax
import jax.numpy as jnp
import matplotlib
import numpy as np

from pasn_jax.labels import AU_NAMES, EXPR_NAMES, NUM_EXPRS, VA_NAMES

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the file-only backend)

TASKS = ("au", "expr", "va")
_CLASS_NAMES = {"au": AU_NAMES, "expr": EXPR_NAMES, "va": VA_NAMES}


def cam_layer(model) -> tuple[str, ...]:
    """The module path of a PASN's last residual block: f_expr's with the prior, else the backbone's."""
    last = f"layer{len(model.layers)}_{model.layers[-1] - 1}"
    return ("prior", "f_expr", last) if model.prior else ("backbone", last)


def _target(outputs: dict, task: str, index):
    """Per image, the output Grad-CAM explains: AU probability, expression logit, valence or arousal of its class
    index [B]. [B]"""
    value = jnp.take_along_axis(outputs[task], index[:, None], axis=1)[:, 0]
    return jax.nn.sigmoid(value) if task == "au" else value


@functools.lru_cache(maxsize=16)
def grad_cam_fn(model, layer: tuple[str, ...], task: str):
    """jit(variables, images [B, S, S, 3], index [B]) -> Grad-CAM maps [B, S, S] in [0, 1], image b's of output
    (task, index[b]), at the module `layer` (a path of module names; cam_layer(model) for a PASN)."""
    if task not in TASKS:
        raise ValueError(f"Grad-CAM target: expected a task in {TASKS}, got {task!r}")

    def output(variables, images, index, delta):
        captured = {}

        def intercept(call, args, kwargs, context):
            value = call(*args, **kwargs)
            if context.method_name == "__call__" and tuple(context.module.path) == layer:
                captured["a"] = value
                value = value + delta.astype(value.dtype)
            return value

        with nn.intercept_methods(intercept):
            outputs = model.apply(variables, images, train=False)
        if "a" not in captured:
            raise ValueError(f"Grad-CAM: the network has no module {'/'.join(layer)}")
        return jnp.sum(_target(outputs, task, index).astype(jnp.float32)), captured["a"]

    @jax.jit
    def grad_cam(variables, images, index):
        shape = jax.eval_shape(lambda: output(variables, images, index, jnp.zeros(()))[1]).shape  # [B, h, w, C]
        grads, a = jax.grad(output, argnums=3, has_aux=True)(variables, images, index, jnp.zeros(shape, jnp.float32))
        weights = grads.mean(axis=(1, 2))  # [B, C]: one weight per channel
        cam = jax.nn.relu(jnp.einsum("bhwc,bc->bhw", a.astype(jnp.float32), weights))
        cam = jax.image.resize(cam, (images.shape[0], images.shape[1], images.shape[2]), "bilinear")
        return cam / (cam.max(axis=(1, 2), keepdims=True) + 1e-12)

    return grad_cam


def grad_cam(model, variables: dict, images, task: str, index, layer: tuple[str, ...] | None = None):
    """Grad-CAM maps [B, S, S] in [0, 1] (host numpy) of a PASN's output `task` on images in [-1, 1]: class `index`
    (one for every image, or one per image [B]; valence 0, arousal 1)."""
    index = np.broadcast_to(np.asarray(index, np.int32), (len(images),))
    fn = grad_cam_fn(model, layer or cam_layer(model), task)
    return np.asarray(fn(variables, jnp.asarray(images), jnp.asarray(index)))


def explain_expressions(model, variables: dict, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(predicted expression [N], Grad-CAM maps [N, S, S] of each image's predicted expression logit)."""
    predicted = np.asarray(jnp.argmax(model.apply(variables, jnp.asarray(images), train=False)["expr"], axis=-1))
    return predicted, grad_cam(model, variables, images, "expr", predicted)


def expression_grid(examples: list[dict], predicted: np.ndarray, maps: np.ndarray):
    """The Grad-CAM grid of evaluation examples (pipeline.spread_examples), each titled with its video, frame, true
    and predicted expression."""
    titles = [f"{e['video'][-16:]} #{e['frame']}\ntrue {EXPR_NAMES[e['expr']] if e['expr'] >= 0 else '-'} / "
              f"pred {EXPR_NAMES[q]}" for e, q in zip(examples, predicted)]
    return gradcam_grid(np.stack([e["image"] for e in examples]), maps, titles)


def mass_ratio(maps: np.ndarray, masks: np.ndarray) -> float:
    """The share of the maps' total mass inside the masks divided by the masks' share of the image area: 1 for a
    map that ignores them, above 1 for one that looks at them (the paper's Fig. 4 claim, measured)."""
    maps, masks = np.asarray(maps, np.float64), np.asarray(masks, bool)
    return float((maps * masks).sum() / maps.sum() / masks.mean())


# ---- Figures: each returns a matplotlib Figure; to_png writes or encodes it. ----

def to_png(figure, path: str | None = None) -> bytes:
    """PNG bytes of a figure (and the file `path`, when given); the figure is closed."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    plt.close(figure)
    data = buffer.getvalue()
    if path:
        with open(path, "wb") as f:
            f.write(data)
    return data


def png_to_array(data: bytes) -> np.ndarray:
    """uint8 [H, W, 3] of PNG bytes (for TensorBoard)."""
    from PIL import Image
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def gradcam_grid(images: np.ndarray, maps: np.ndarray, titles: list[str], columns: int = 4):
    """Faces [N, S, S, 3] in [-1, 1] with their Grad-CAM maps [N, S, S] overlaid, one title each."""
    n = len(images)
    rows = -(-n // columns)
    figure, axes = plt.subplots(rows, columns, figsize=(2.2 * columns, 2.5 * rows), squeeze=False)
    for k, ax in enumerate(axes.ravel()):
        ax.axis("off")
        if k < n:
            ax.imshow(np.clip((images[k] + 1) / 2, 0, 1))
            ax.imshow(maps[k], cmap="jet", alpha=0.45, vmin=0, vmax=1)
            ax.set_title(titles[k], fontsize=7)
    figure.tight_layout()
    return figure


def confusion_matrix(expr_prob: np.ndarray, expr: np.ndarray) -> np.ndarray:
    """Counts [7, 7]: row the true class, column the predicted (argmax) one, over labelled frames."""
    labelled = expr >= 0
    pred = np.argmax(expr_prob[labelled], axis=1)
    return np.bincount(expr[labelled] * NUM_EXPRS + pred, minlength=NUM_EXPRS ** 2).reshape(NUM_EXPRS, NUM_EXPRS)


def confusion_figure(counts: np.ndarray, title: str = ""):
    """The confusion matrix, each row normalised to the share of its true class, with the counts written in."""
    shares = counts / np.maximum(1, counts.sum(axis=1, keepdims=True))
    figure, ax = plt.subplots(figsize=(5.2, 4.6))
    ax.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    for i in range(NUM_EXPRS):
        for j in range(NUM_EXPRS):
            ax.text(j, i, f"{counts[i, j]}", ha="center", va="center", fontsize=7,
                    color="white" if shares[i, j] > 0.5 else "black")
    ax.set_xticks(range(NUM_EXPRS), EXPR_NAMES, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(NUM_EXPRS), EXPR_NAMES, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title or "EXPR confusion matrix (rows: share of the true class)", fontsize=9)
    figure.tight_layout()
    return figure


def per_class_f1_figure(task: str, runs: dict[str, np.ndarray], chance: np.ndarray | None = None):
    """Bars of each class's F1 (AU or EXPR), one colour per run (the paper's Fig. 3), chance as black ticks."""
    names = _CLASS_NAMES[task]
    figure, ax = plt.subplots(figsize=(max(6.0, 0.6 * len(names) * max(1, len(runs)) ** 0.5), 3.2))
    width = 0.8 / max(1, len(runs))
    x = np.arange(len(names))
    for k, (run, values) in enumerate(runs.items()):
        ax.bar(x + (k - (len(runs) - 1) / 2) * width, values, width, label=run)
    if chance is not None:
        ax.scatter(x, chance, marker="_", s=300, color="black", label="chance", zorder=3)
    ax.set_xticks(x, names, rotation=45 if task == "expr" else 0, fontsize=8)
    ax.set_ylim(0, 1)
    ax.set_ylabel("F1")
    ax.set_title(f"{task.upper()} F1 per class", fontsize=9)
    ax.legend(fontsize=7, ncol=min(4, len(runs) + 1))
    figure.tight_layout()
    return figure


def va_figure(va_pred: np.ndarray, va: np.ndarray, title: str = ""):
    """Predicted against true valence and arousal, as 2-D histograms over the labelled frames."""
    labelled = np.all(va > -2, axis=1)
    figure, axes = plt.subplots(1, 2, figsize=(7.0, 3.3))
    for d, ax in enumerate(axes):
        ax.hist2d(va[labelled, d], va_pred[labelled, d], bins=40, range=[[-1, 1], [-1, 1]], cmap="viridis", cmin=1)
        ax.plot([-1, 1], [-1, 1], color="white", linewidth=0.8)
        ax.set_xlabel(f"true {VA_NAMES[d]}")
        ax.set_ylabel(f"predicted {VA_NAMES[d]}")
        ax.set_aspect("equal")
    figure.suptitle(title or "valence and arousal: predicted vs true", fontsize=9)
    figure.tight_layout()
    return figure


def curves_figure(runs: dict[str, dict[str, tuple]], tags: list[str], chance: dict[str, float] | None = None):
    """One panel per tag (e.g. train/loss, eval/s_au): each run's (steps, values), chance as a dashed line."""
    figure, axes = plt.subplots(1, len(tags), figsize=(3.4 * len(tags), 2.8), squeeze=False)
    for ax, tag in zip(axes[0], tags):
        for run, series in runs.items():
            if tag in series:
                steps, values = series[tag]
                ax.plot(steps, values, marker="." if len(steps) < 10 else None, label=run)
        if chance and tag in chance:
            ax.axhline(chance[tag], color="black", linestyle="--", linewidth=0.8, label="chance")
        ax.set_title(tag, fontsize=9)
        ax.set_xlabel("step", fontsize=8)
    axes[0][0].legend(fontsize=7)
    figure.tight_layout()
    return figure
