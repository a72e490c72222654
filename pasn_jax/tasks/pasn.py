"""The paper's multi-task training (§3.3, §4.1): PASN on Aff-Wild2 shards with the masked multi-task loss (eq. 7),
evaluated with the ABAW2 metrics (§4.2): `workdir/eval/<step>/{metrics.json,predictions.csv}`.

A task of the one training loop (`pasn_jax/tasks/__init__.py` lists what a task provides).
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np

from pasn_jax import evaluation, losses, metrics, parallel, paths, predictions, tower_weights, visualize
from pasn_jax.data import folds, frames_tree, pipeline, train_stream
from pasn_jax.data.source import resolve_data_dir, train_source
from pasn_jax.data.synthetic import prepare, tree
from pasn_jax.models import pasn, towers

BATCH_KEYS = ("image", "au", "au_mask", "expr", "expr_mask", "va", "va_mask")
IMAGES_PER_EXAMPLE = 1
trainable_mask = towers.trainable_mask


def build_model(config, data_dir: str | None = None) -> pasn.PASN:
    del data_dir  # PASN's outputs are the fixed label spaces
    return pasn.build_model(config.model)


def prepare_data(config) -> str:
    return resolve_data_dir(config.data)


def predict_source(config, data_dir: str) -> frames_tree.TreeFrames:
    """The unlabelled frames `--mode=predict` reads: config.predict.root's cropped_aligned tree (its videos listed in
    config.predict.videos, else all), by default the synthetic set's test videos."""
    root, videos = config.predict.root, config.predict.videos
    if not root:
        if config.data.source != "synthetic":
            raise ValueError("config.predict.root: expected a folder with cropped_aligned/<video>/<frame:05d>.jpg "
                             "(e.g. the ABAW test set's frames), with config.predict.videos listing its videos")
        root = paths.join(paths.path(data_dir).parent, prepare.TREE_DIR)
        videos = videos or paths.join(root, tree.TEST_LIST_FILE)
        if not paths.path(videos).is_file():
            raise ValueError("config.data.synthetic.test_videos is 0: the synthetic set has no test videos to "
                             "predict; set it, or config.predict.root")
    paths.check(root, "config.predict.root")
    return frames_tree.TreeFrames(root, videos)


def train_batches(config, data_dir: str, *, batch_size: int, seed: int, start: int, worker_count: int,
                  shard_index: int, shard_count: int):
    return train_stream.train_dataset(data_dir, batch_size=batch_size, image_size=config.data.image_size, seed=seed,
                                      augment=config.data.augment, start=start, worker_count=worker_count,
                                      shard_index=shard_index, shard_count=shard_count,
                                      skip_bad=config.data.skip_bad_records,
                                      source=train_source(config.data,
                                                          folds.split_source(data_dir, "train", config.data)))


def initial_variables(model, config, rng, data_dir: str, mesh) -> tuple[dict, str]:
    """The trained towers, and for a random f_id its statistics measured on augmented training images drawn in
    another order than training's (seed + 1): tower_weights.initial_prior_variables."""
    def identity_batches():
        return train_batches(config, data_dir, batch_size=parallel.per_process_batch_size(config.batch_size, mesh),
                             seed=config.seed + 1, start=0, worker_count=0, shard_index=jax.process_index(),
                             shard_count=jax.process_count())

    variables, measured = tower_weights.initial_prior_variables(model, config, rng, mesh, identity_batches)
    return variables, f"f_id batch-norm statistics measured on {measured} training images" if measured else ""


def loss_fn(model, config):
    """The total loss (eq. 7) of a batch, with the task losses (eq. 3, 4, 6) as metrics."""
    weights = {"au": config.loss.au, "expr": config.loss.expr, "va": config.loss.va}

    def loss(variables, batch, rng):
        outputs, updated = model.apply(variables, batch["image"], train=True, rngs={"dropout": rng},
                                       mutable=["batch_stats"])
        total, per_task = losses.multitask_loss(outputs, batch, smoothing=config.loss.smoothing, weights=weights)
        return total, {f"loss_{k}": v for k, v in per_task.items()}, updated["batch_stats"]

    return loss


def _predict(model, variables, images):
    outputs = model.apply(variables, images, train=False)
    return {"au_prob": jax.nn.sigmoid(outputs["au"].astype(jnp.float32)),  # [B, 12]
            "expr_prob": jax.nn.softmax(outputs["expr"].astype(jnp.float32)),  # [B, 7]
            "va_pred": outputs["va"].astype(jnp.float32)}  # [B, 2]


@functools.lru_cache(maxsize=8)
def _mesh_predict(model, mesh):
    """_predict jitted over the mesh, one per (network, mesh): evaluators of equal networks (an ensemble's members,
    a member's splits) share its compilations."""
    repl, data = parallel.replicated(mesh), parallel.batch_sharding(mesh)
    return jax.jit(functools.partial(_predict, model), in_shardings=(repl, data), out_shardings=repl)


class Evaluator:
    """Predicts a split on the mesh and scores it; every process runs it, process 0 writes the files."""

    def __init__(self, model, config, data_dir: str, mesh):
        self.model, self.config, self.data_dir, self.mesh = model, config, data_dir, mesh
        self.split = config.eval.split
        self.local_batch_size = parallel.per_process_batch_size(config.data.eval_batch_size, mesh)
        self._predict = _mesh_predict(model, mesh)

    def predict(self, variables, source=None) -> dict:
        """All frames of the split (or of a source of frame records, e.g. predict_source's), in (video, frame)
        order: predictions, labels, video and frame as host numpy arrays."""
        source = folds.split_source(self.data_dir, self.split, self.config.data) if source is None else source
        batches = pipeline.eval_dataset(self.data_dir, batch_size=self.local_batch_size,
                                        image_size=self.config.data.image_size, shard_index=jax.process_index(),
                                        shard_count=jax.process_count(), source=source)
        p = evaluation.predict_split(self._predict, variables, batches, self.mesh,
                                     ("au", "expr", "va", "frame", "video"))
        # Processes hold contiguous shares; put their interleaved batches back in stored (video, frame) order.
        order = np.lexsort((p["frame"], p["video"]))
        return {k: v[order] for k, v in p.items()}

    def run(self, variables, step: int, workdir: str | None = None) -> evaluation.EvalResult:
        """Predicts, scores, and (process 0, with a workdir) writes eval/<step>/{metrics.json,predictions.csv}
        (evaluation.eval_dir: another split's in eval/<step>/<split>/);
        metrics.json holds the scores, and under "chance" those of trivial predictors on the same frames."""
        source = folds.split_source(self.data_dir, self.split, self.config.data)
        p = self.predict(variables, source)
        scores = metrics.abaw_metrics(p["au_prob"], p["au"], p["expr_prob"], p["expr"], p["va_pred"], p["va"])
        result = evaluation.EvalResult(step=step, split=self.split, frames=len(p["frame"]),
                                       scores={k: float(v) for k, v in scores.items()},
                                       chance=metrics.chance_metrics(p["au"], p["expr"], p["va"]),
                                       images=self.pictures(variables, p, source))
        if workdir is not None and jax.process_index() == 0:
            out_dir = evaluation.eval_dir(workdir, step, self.split)
            paths.makedirs(out_dir)
            predictions.write_predictions(paths.join(out_dir, "predictions.csv"), p)
            evaluation.write_json(paths.join(out_dir, "metrics.json"),
                                  dict(step=step, split=self.split, frames=result.frames, **result.scores,
                                       chance=result.chance))
        return result

    def pictures(self, variables, p: dict, source) -> dict:
        """Process 0's TensorBoard images of an evaluation of `source`'s records (config.eval.images frames; 0:
        none): the EXPR confusion matrix and the Grad-CAM grid of those frames' predicted expressions."""
        count = int(self.config.eval.get("images", 0))
        if not count or jax.process_index() != 0:
            return {}
        confusion = visualize.confusion_figure(visualize.confusion_matrix(p["expr_prob"], p["expr"]))
        examples = pipeline.spread_examples(source, self.config.data.image_size, count)
        host = jax.device_get(variables)
        predicted, maps = visualize.explain_expressions(self.model, host, np.stack([e["image"] for e in examples]))
        return {"expr_confusion": visualize.png_to_array(visualize.to_png(confusion)),
                "gradcam": visualize.png_to_array(visualize.to_png(visualize.expression_grid(examples, predicted,
                                                                                            maps)))}


def format_table(result: evaluation.EvalResult) -> str:
    """The ABAW table of an evaluation, with the trivial predictors' scores beside it."""
    s, c = result.scores, result.chance
    zeros, ones, majority, mean = c["au_all_zeros"], c["au_all_ones"], c["expr_majority"], c["va_mean"]
    return "\n".join([
        f"ABAW2 metrics at step {result.step} on {result.split} ({result.frames} frames)",
        "         F1      TAcc    score          | chance",
        f"  AU     {s['au_f1']:.4f}  {s['au_tacc']:.4f}  S_AU   {s['s_au']:.4f}  | all-zeros F1 {zeros['au_f1']:.4f} "
        f"TAcc {zeros['au_tacc']:.4f}; all-ones F1 {ones['au_f1']:.4f} TAcc {ones['au_tacc']:.4f}",
        f"  EXPR   {s['expr_f1']:.4f}  {s['expr_tacc']:.4f}  S_EXPR {s['s_expr']:.4f}  | majority class F1 "
        f"{majority['expr_f1']:.4f} TAcc {majority['expr_tacc']:.4f}",
        f"  VA     CCC_V {s['ccc_v']:.4f}  CCC_A {s['ccc_a']:.4f}  S_VA {s['s_va']:.4f}  | mean prediction CCC_V "
        f"{mean['ccc_v']:.4f} CCC_A {mean['ccc_a']:.4f}",
    ])
