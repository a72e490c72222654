"""Stage 1 of the prior (paper §3.2): the identity tower f_id trained as a face-recognition network with an additive
angular margin softmax over identity labels (ArcFace, s = 64, m = 0.5; CosFace as an option), evaluated by face
verification with the standard 10-fold protocol on every `.bin` pair set in the data folder (the synthetic set's
`verify.bin` holds people never seen in training; converting an insightface folder copies its `lfw.bin` & co.)
and on those named in `eval.verification`. Writes `workdir/eval/<step>/metrics.json`.

A task of the one training loop (`pasn_jax/tasks/__init__.py` lists what a task provides).
"""

import glob
import os

import jax
import jax.numpy as jnp
import numpy as np

from pasn_jax import evaluation, parallel, paths, prior_losses, prior_metrics, train_state
from pasn_jax.data import pipeline, shards, train_stream, verification_bin
from pasn_jax.data.synthetic.prepare import prepare_identities
from pasn_jax.models import face_id, towers

BATCH_KEYS = ("image", "identity")
IMAGES_PER_EXAMPLE = 1
trainable_mask = towers.trainable_mask
CHANCE_ACCURACY = 0.5  # verification sets hold as many same-person pairs as different-person ones


def prepare_data(config) -> str:
    """The shards folder: converted insightface data in `data.dir`, or the synthetic identities rendered on first
    use (their verification set `verify.bin` lies in the same folder)."""
    if config.data.source == "synthetic":
        s = config.data.synthetic
        return prepare_identities(os.path.expanduser(s.cache_dir), people=s.identities, images=s.images,
                                  held_out=s.held_out, pairs=s.pairs, size=s.size, seed=s.seed,
                                  num_shards=s.num_shards)[0]
    if not config.data.dir or not os.path.isdir(config.data.dir):
        raise ValueError(f"config.data.dir: {config.data.dir!r} is not a folder of converted identity shards "
                         f"(python -m pasn_jax.data.convert insightface --root ROOT --out DIR)")
    return config.data.dir


def num_identities(data_dir: str) -> int:
    metadata = shards.read_metadata(data_dir, "train")
    return int(metadata.get("num_classes") or metadata["num_identities"])


def build_model(config, data_dir: str | None) -> face_id.FaceIdentity:
    """The tower and a cosine classifier over the identities of the training data (`face_id.num_classes`, or
    the number the data folder's train split holds when 0)."""
    classes = config.face_id.num_classes or (num_identities(data_dir) if data_dir else 0)
    if not classes:
        raise ValueError("config.face_id.num_classes: 0 means 'from the data', and no data folder was given")
    return face_id.build_model(config.model, classes)


def train_batches(config, data_dir: str, *, batch_size: int, seed: int, start: int, worker_count: int,
                  shard_index: int, shard_count: int):
    return train_stream.train_dataset(data_dir, batch_size=batch_size, image_size=config.data.image_size, seed=seed,
                                      augment=config.data.augment, start=start, worker_count=worker_count,
                                      shard_index=shard_index, shard_count=shard_count,
                                      skip_bad=config.data.skip_bad_records)


def initial_variables(model, config, rng, data_dir: str, mesh) -> tuple[dict, str]:
    """Random initialisation (the tower learns identities from scratch)."""
    del data_dir, mesh
    return jax.device_get(jax.jit(lambda r: train_state.init_variables(model, config.model.image_size, r))(rng)), ""


def loss_fn(model, config):
    """The margin softmax of the identity labels, with the training accuracy of the plain cosine as a metric."""
    options = dict(kind=config.face_id.loss, scale=config.face_id.scale, margin=config.face_id.margin)

    def loss(variables, batch, rng):
        outputs, updated = model.apply(variables, batch["image"], train=True, rngs={"dropout": rng},
                                       mutable=["batch_stats"])
        value = prior_losses.margin_softmax_loss(outputs["cosine"], batch["identity"], **options)
        accuracy = jnp.mean(jnp.argmax(outputs["cosine"], axis=-1) == batch["identity"])
        return value, {"train_accuracy": accuracy}, updated["batch_stats"]

    return loss


def _embed(model, variables, images):
    """Embeddings of images and of their mirror images, summed (insightface's verification), float32."""
    plain = model.apply(variables, images, train=False)["embedding"]
    return plain + model.apply(variables, images[:, :, ::-1], train=False)["embedding"]


def verification_sets(config, data_dir: str) -> list[str]:
    return sorted(glob.glob(os.path.join(data_dir, "*.bin"))) + list(config.eval.verification)


class Evaluator:
    """Face verification on each pair set: every process embeds its share of the images, all score them."""

    def __init__(self, model, config, data_dir: str, mesh):
        self.config, self.mesh = config, mesh
        self.sets = verification_sets(config, data_dir)
        if not self.sets:
            raise ValueError(f"{data_dir}: no verification set (*.bin) to evaluate on; name some in "
                             f"config.eval.verification")
        self.local_batch_size = parallel.per_process_batch_size(config.data.eval_batch_size, mesh)
        repl, data = parallel.replicated(mesh), parallel.batch_sharding(mesh)
        self._embed = jax.jit(lambda v, x: {"embedding": _embed(model, v, x)}, in_shardings=(repl, data),
                              out_shardings=repl)

    def verify(self, variables, path: str) -> dict:
        images, issame = verification_bin.read_bin(path)
        batches = pipeline.image_batches(images, batch_size=self.local_batch_size,
                                         image_size=self.config.data.image_size, shard_index=jax.process_index(),
                                         shard_count=jax.process_count())
        p = evaluation.predict_split(self._embed, variables, batches, self.mesh, ("index",))
        embeddings = p["embedding"][np.argsort(p["index"])]
        return prior_metrics.verification_accuracy(embeddings[0::2], embeddings[1::2], issame)

    def run(self, variables, step: int, workdir: str | None = None) -> evaluation.EvalResult:
        scores, pairs = {}, 0
        for path in self.sets:
            name = os.path.splitext(os.path.basename(path))[0]
            result = self.verify(variables, path)
            pairs += result["pairs"]
            scores.update({f"{name}_accuracy": result["accuracy"], f"{name}_accuracy_std": result["accuracy_std"],
                           f"{name}_threshold": result["threshold"]})
        result = evaluation.EvalResult(step=step, split=",".join(os.path.basename(p) for p in self.sets),
                                       frames=pairs, scores=scores, chance={"accuracy": CHANCE_ACCURACY})
        if workdir is not None and jax.process_index() == 0:
            out_dir = evaluation.eval_dir(workdir, step)
            paths.makedirs(out_dir)
            evaluation.write_json(paths.join(out_dir, "metrics.json"),
                                  dict(step=step, sets=self.sets, pairs=pairs, **scores, chance=result.chance))
        return result


def format_table(result: evaluation.EvalResult) -> str:
    """Verification accuracy (mean +- sd over the 10 folds) per pair set, beside chance."""
    lines = [f"Face verification at step {result.step} ({result.frames} pairs, 10-fold protocol)"]
    for key in result.scores:
        if key.endswith("_accuracy"):
            name = key.removesuffix("_accuracy")
            std = result.scores[name + "_accuracy_std"]
            lines.append(f"  {name:12s} accuracy {result.scores[key]:.4f} +- {std:.4f}"
                         f" (threshold {result.scores[name + '_threshold']:.2f}) | chance {CHANCE_ACCURACY:.4f}")
    return "\n".join(lines)

