"""Stage 2 of the prior (paper §3.2, Fig. 2): DLN's deviation learning. f_expr starts from a stage-1 f_id, f_id is
frozen, and Emb = f_expr - f_id is projected to a 16-d L2-normalised embedding trained with FECNet's triplet loss
on expression-similarity triplets (FEC; the synthetic default draws them from known AU intensities). Evaluated by
FEC's triplet prediction accuracy on held-out triplets, beside the same accuracy of f_id's own embedding and of an
untrained tower. Writes `workdir/eval/<step>/metrics.json`.

A task of the one training loop (`pasn_jax/tasks/__init__.py` lists what a task provides).
"""

import os

import jax
import jax.numpy as jnp

from pasn_jax import evaluation, parallel, paths, prior_losses, prior_metrics, tower_weights
from pasn_jax.data import triplet_pipeline
from pasn_jax.data.synthetic.prepare import prepare_triplets
from pasn_jax.models import dln, towers

BATCH_KEYS = ("image", "triplet_type")
IMAGES_PER_EXAMPLE = 3
trainable_mask = towers.trainable_mask
CHANCE_ACCURACY = 1 / 3  # which of three pairs is the most similar
UNTRAINED_SEED = 12345  # the untrained reference tower's initialisation


def prepare_data(config) -> str:
    """The shards folder (splits train and test): converted FEC in `data.dir`, or the synthetic triplets rendered on
    first use."""
    if config.data.source == "synthetic":
        s = config.data.synthetic
        return prepare_triplets(os.path.expanduser(s.cache_dir), people=s.people, images=s.images,
                                test_people=s.test_people, train_triplets=s.train_triplets,
                                test_triplets=s.test_triplets, size=s.size, seed=s.seed, num_shards=s.num_shards)
    if not config.data.dir or not os.path.isdir(config.data.dir):
        raise ValueError(f"config.data.dir: {config.data.dir!r} is not a folder of converted FEC triplet shards "
                         f"(python -m pasn_jax.data.convert fec --csv CSV --images DIR --out DIR --split train)")
    return config.data.dir


def build_model(config, data_dir: str | None = None) -> dln.DLN:
    del data_dir
    return dln.build_model(config.model, config.dln.projection_dim)


def train_batches(config, data_dir: str, *, batch_size: int, seed: int, start: int, worker_count: int,
                  shard_index: int, shard_count: int):
    return triplet_pipeline.train_triplets(data_dir, batch_size=batch_size, image_size=config.data.image_size,
                                           seed=seed, augment=config.data.augment, start=start,
                                           worker_count=worker_count, shard_index=shard_index,
                                           shard_count=shard_count, skip_bad=config.data.skip_bad_records)


def _faces(batch_images):
    """[B, 3, S, S, 3] -> [3B, S, S, 3]."""
    return batch_images.reshape((-1,) + batch_images.shape[2:])


def initial_variables(model, config, rng, data_dir: str, mesh) -> tuple[dict, str]:
    """f_id from `model.weights.f_id` (a stage-1 workdir or a PyTorch file), f_expr copied from it (DLN), the
    projection at random; a random f_id gets its batch-norm statistics measured on training faces."""
    def identity_batches():
        return train_batches(config, data_dir, batch_size=parallel.per_process_batch_size(config.batch_size, mesh),
                             seed=config.seed + 1, start=0, worker_count=0, shard_index=jax.process_index(),
                             shard_count=jax.process_count())

    variables, measured = tower_weights.initial_prior_variables(model, config, rng, mesh, identity_batches, _faces)
    return variables, f"f_id batch-norm statistics measured on {measured} faces" if measured else ""


def loss_fn(model, config):
    """FECNet's triplet loss on the embeddings of the three faces, margins by triplet type."""
    margins = tuple(config.dln.margins)

    def loss(variables, batch, rng):
        images = batch["image"]
        outputs, updated = model.apply(variables, _faces(images), train=True, rngs={"dropout": rng},
                                       mutable=["batch_stats"])
        embeddings = outputs["embedding"].reshape(images.shape[0], 3, -1)
        value = prior_losses.fec_triplet_loss(embeddings, batch["triplet_type"], margins=margins,
                                              mask=batch["bad"] == 0)
        return value, {}, updated["batch_stats"]

    return loss


def _embeddings(model, untrained, variables, images):
    """The three embeddings compared, for [B, 3, S, S, 3]: DLN's, f_id's own (L2-normalised) and an untrained
    tower's (L2-normalised), each [B, 3, D]."""
    faces = _faces(images)
    tower = towers.tower_module(model)
    identity = tower.apply(towers.get_tower(variables, "f_id"), faces, train=False)
    random = tower.apply(untrained, faces, train=False)
    shape = images.shape[:2] + (-1,)
    return {"dln": model.apply(variables, faces, train=False)["embedding"].reshape(shape),
            "f_id": prior_losses.normalise(identity).reshape(shape),
            "untrained": prior_losses.normalise(random).reshape(shape)}


class Evaluator:
    """Triplet prediction accuracy on the held-out split: every process embeds its share of the triplets."""

    def __init__(self, model, config, data_dir: str, mesh):
        self.config, self.data_dir, self.mesh = config, data_dir, mesh
        self.split = config.eval.split
        self.local_batch_size = parallel.per_process_batch_size(config.data.eval_batch_size, mesh)
        init = jax.jit(lambda r: towers.tower_module(model).init(
            r, jnp.zeros((1, config.model.image_size, config.model.image_size, 3)), train=False))
        untrained = init(jax.random.key(UNTRAINED_SEED))
        repl, data = parallel.replicated(mesh), parallel.batch_sharding(mesh)
        self._embed = jax.jit(lambda v, x: _embeddings(model, untrained, v, x), in_shardings=(repl, data),
                              out_shardings=repl)

    def run(self, variables, step: int, workdir: str | None = None) -> evaluation.EvalResult:
        batches = triplet_pipeline.eval_triplets(self.data_dir, batch_size=self.local_batch_size,
                                                 image_size=self.config.data.image_size, split=self.split,
                                                 shard_index=jax.process_index(), shard_count=jax.process_count())
        p = evaluation.predict_split(self._embed, variables, batches, self.mesh, ("triplet_type",))
        scores = {f"{name}_triplet_accuracy": prior_metrics.triplet_accuracy(p[name])
                  for name in ("dln", "f_id", "untrained")}
        for kind in (1, 2, 3):
            chosen = p["triplet_type"] == kind
            if chosen.any():
                scores[f"dln_triplet_accuracy_{kind}class"] = prior_metrics.triplet_accuracy(p["dln"][chosen])
        result = evaluation.EvalResult(step=step, split=self.split, frames=len(p["dln"]), scores=scores,
                                       chance={"triplet_accuracy": CHANCE_ACCURACY})
        if workdir is not None and jax.process_index() == 0:
            out_dir = evaluation.eval_dir(workdir, step, self.split)
            paths.makedirs(out_dir)
            evaluation.write_json(paths.join(out_dir, "metrics.json"),
                                  dict(step=step, split=self.split, triplets=result.frames, **scores,
                                       chance=result.chance))
        return result


def format_table(result: evaluation.EvalResult) -> str:
    s = result.scores
    by_type = ", ".join(f"{k} {s[f'dln_triplet_accuracy_{k}class']:.4f}" for k in (1, 2, 3)
                        if f"dln_triplet_accuracy_{k}class" in s)
    return "\n".join([
        f"Triplet prediction accuracy at step {result.step} on {result.split} ({result.frames} triplets)",
        f"  DLN embedding        {s['dln_triplet_accuracy']:.4f}  (by classes in the triplet: {by_type})",
        f"  f_id's own embedding {s['f_id_triplet_accuracy']:.4f}",
        f"  untrained tower      {s['untrained_triplet_accuracy']:.4f}  | chance {CHANCE_ACCURACY:.4f}",
    ])

