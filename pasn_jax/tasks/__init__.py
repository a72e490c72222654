"""Training tasks: what differs between the trainings that the one loop (`train.py`) runs, chosen by `config.task`.

A task module provides:
  BATCH_KEYS                    the numeric fields of a train batch the loss reads (sent to the devices)
  IMAGES_PER_EXAMPLE            images in one example of a batch (the log's img/s counts images)
  prepare_data(config)          -> the shards folder (rendering the embedded synthetic default when asked)
  train_batches(config, data_dir, *, batch_size, seed, start, worker_count, shard_index, shard_count)
                                -> endless iterator of this process's train batches from batch `start`
                                   (pasn_jax/data/train_stream.py: batch k is a function of (seed, k))
  build_model(config, data_dir) -> the flax module (images [B, S, S, 3] in [-1, 1] in); data_dir may be None
                                   where the model does not depend on the data
  trainable_mask(params)        -> True on the leaves the optimizer updates
  initial_variables(model, config, rng, data_dir, mesh) -> (variables, a note for the log)
  loss_fn(model, config)        -> loss(variables, batch, rng) -> (loss, {name: scalar}, new batch_stats)
  Evaluator(model, config, data_dir, mesh) with run(variables, step, workdir=None) -> evaluation.EvalResult
  format_table(result)          -> the printed table of an evaluation
No task imports another; the loop reaches a task only through `load`.
"""

import importlib

TASKS = ("pasn", "face_id", "dln")
DEFAULT_TASK = "pasn"  # workdirs made before config.task existed trained PASN


def load(config):
    """The task module named by `config.task` (a config without the key means PASN)."""
    name = config.get("task", DEFAULT_TASK)
    if name not in TASKS:
        raise ValueError(f"config.task: expected one of {', '.join(TASKS)}, got {name!r}")
    return importlib.import_module(f"pasn_jax.tasks.{name}")
