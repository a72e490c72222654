r"""Entry point: `python -m pasn_jax.main --config=configs/abaw.py[:VARIANT] --workdir=DIR [--mode=train|eval|predict]`.

Kept short on purpose: flags, optional `jax.distributed` set-up, then `train.train_and_evaluate` or
`evaluate.evaluate`. Several processes (hosts) run the same command; `launch/README.md` shows how.
"""

import os
import sys

import jax
from absl import app, flags, logging
from ml_collections import config_flags

from pasn_jax import checkpointing, evaluate, paths, preemption, train, xla_flags

config_flags.DEFINE_config_file("config", None, "Config file, e.g. configs/abaw.py:demo.", lock_config=True)
flags.DEFINE_string("workdir", None, "Folder for checkpoints, logs and evaluation outputs: local, or gs://BUCKET/PATH "
                    "(requirements-gcs.txt).")
flags.DEFINE_enum("mode", "train", ["train", "eval", "predict"], "train (then evaluate), only evaluate a checkpoint, "
                  "or predict unlabelled frames (config.predict) into workdir/predict/<step>/predictions.csv.")
flags.DEFINE_bool("distributed", False, "Call jax.distributed.initialize() (implied by --coordinator_address or "
                  "$JAX_COORDINATOR_ADDRESS); without the flags below it auto-detects SLURM, Open MPI, TPU pods.")
flags.DEFINE_string("coordinator_address", None, "host:port of process 0, for jax.distributed.")
flags.DEFINE_integer("num_processes", None, "Number of processes, for jax.distributed.")
flags.DEFINE_integer("process_id", None, "This process's index, for jax.distributed.")
flags.DEFINE_bool("traceback", False, "Show the full traceback of an input error instead of one line.")
flags.DEFINE_integer("preempted_exit_code", 0, "Exit status after a preemption signal was handled (a checkpoint of "
                     "the current step written): 0, or another value for schedulers that requeue failed jobs.")
flags.mark_flags_as_required(["config", "workdir"])
FLAGS = flags.FLAGS

# Errors that are the user's input (paths, data, configs), a run stopped on purpose or a checkpoint that cannot be
# written or read: one line, exit 1.
_USER_ERRORS = (ValueError, FileNotFoundError, train.NonFiniteLossError, checkpointing.CheckpointError)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    xla_flags.add_xla_flags()
    if FLAGS.distributed or FLAGS.coordinator_address or os.environ.get("JAX_COORDINATOR_ADDRESS"):
        jax.distributed.initialize(FLAGS.coordinator_address, FLAGS.num_processes, FLAGS.process_id)
    logging.set_verbosity(logging.WARNING)  # our progress goes to stdout; keep library INFO chatter out
    config, workdir = FLAGS.config, FLAGS.workdir
    try:
        paths.check(workdir, "--workdir")
        if config.get("init_from"):
            paths.check(config.init_from, "config.init_from")
        if FLAGS.mode == "train":
            train.train_and_evaluate(config, workdir)
        else:
            run = evaluate.evaluate if FLAGS.mode == "eval" else evaluate.predict
            run(config, workdir, step=None if config.eval.step < 0 else config.eval.step)
    except preemption.Preempted as e:
        print(e, flush=True)
        sys.exit(FLAGS.preempted_exit_code)
    except _USER_ERRORS as e:
        if FLAGS.traceback:
            raise
        print(f"error: {e}", file=sys.stderr, flush=True)
        sys.exit(1)


if __name__ == "__main__":
    app.run(main)
