"""Training loop: `train_and_evaluate(config, workdir)` (paper §4.1; ARCHITECTURE.md "Training recipe").

Sections, in order: mesh -> workdir guard -> input -> model, optimizer, abstract state -> jitted step ->
restore or init -> evaluator -> loop (log, evaluate, checkpoint). The step is data parallel: one `Mesh` over all
devices of all processes, the batch split on `data`, the state replicated and donated. A step whose loss or
gradient is not finite leaves the state untouched and is counted; `max_nonfinite_in_a_row` of them in a row stop
the run, with the last checkpoint intact.
"""

import functools
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from pasn_jax import checkpointing, evaluate, losses, parallel, train_state
from pasn_jax.data import pipeline
from pasn_jax.data.source import resolve_data_dir


class NonFiniteLossError(RuntimeError):
    pass


def train_step(model, optimizer, schedule, loss_config, state, batch, rng):
    """One SGD step on the total loss (eq. 7); skipped (state kept) when the loss or a gradient is not finite."""
    dropout_rng = jax.random.fold_in(rng, state.step)

    def loss_fn(params):
        outputs, updated = model.apply({"params": params, "batch_stats": state.batch_stats}, batch["image"],
                                       train=True, rngs={"dropout": dropout_rng}, mutable=["batch_stats"])
        total, per_task = losses.multitask_loss(
            outputs, batch, smoothing=loss_config.smoothing,
            weights={"au": loss_config.au, "expr": loss_config.expr, "va": loss_config.va})
        return total, (per_task, updated["batch_stats"])

    (loss, (per_task, batch_stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    grad_norm = optax.global_norm(grads)
    finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm) & jnp.isfinite(optax.global_norm(updates))
    keep = lambda new, old: jax.tree.map(lambda n, o: jnp.where(finite, n, o), new, old)
    in_a_row = jnp.where(finite, 0, state.nonfinite_in_a_row + 1)
    new_state = state.replace(
        step=state.step + 1, params=keep(params, state.params), batch_stats=keep(batch_stats, state.batch_stats),
        opt_state=keep(opt_state, state.opt_state), nonfinite_total=state.nonfinite_total + (~finite),
        nonfinite_in_a_row=in_a_row)
    step_metrics = {"loss": loss, "grad_norm": grad_norm, "lr": schedule(state.step),
                    "nonfinite_in_a_row": in_a_row, "nonfinite_total": new_state.nonfinite_total,
                    **{f"loss_{k}": v for k, v in per_task.items()}}
    return new_state, step_metrics


class _Logger:
    """Console (stdout) and TensorBoard (workdir/tb) logging on process 0."""

    def __init__(self, workdir: str):
        self._writer = None
        if jax.process_index() == 0:
            from tensorboardX import SummaryWriter
            self._writer = SummaryWriter(f"{workdir}/tb")

    def scalars(self, step: int, values: dict, prefix: str) -> None:
        if self._writer is not None:
            for k, v in values.items():
                self._writer.add_scalar(f"{prefix}/{k}", float(v), step)
            self._writer.flush()

    def info(self, msg: str) -> None:
        if jax.process_index() == 0:
            print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)

    def close(self):
        if self._writer is not None:
            self._writer.close()


def _duration(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 60}m{seconds % 60:02d}s"


def _identity_images(config, data_dir: str, mesh) -> list:
    """`model.identity_stats_batches` global batches of augmented training images in another order than training's
    (seed + 1) for `train_state.measure_identity_statistics`; none when f_id has a weight file (or without prior)."""
    if not train_state.measures_identity_statistics(config):
        return []
    batches = pipeline.train_dataset(
        data_dir, batch_size=parallel.per_process_batch_size(config.batch_size, mesh),
        image_size=config.data.image_size, seed=config.seed + 1, augment=config.data.augment, worker_count=0,
        shard_index=jax.process_index(), shard_count=jax.process_count())
    return [parallel.global_batch(next(batches), mesh)["image"] for _ in range(config.model.identity_stats_batches)]


def train_and_evaluate(config, workdir: str) -> evaluate.EvalResult:
    """Trains to `config.num_steps` (resuming from the workdir's latest checkpoint) and returns the last
    evaluation; a workdir already trained that far is only evaluated."""
    # Mesh and workdir.
    mesh = parallel.make_mesh()
    checkpointing.check_workdir_config(workdir, config)
    logger = _Logger(workdir)
    logger.info(f"{jax.process_count()} process(es), {jax.device_count()} device(s) "
                f"({jax.devices()[0].platform}); global batch {config.batch_size}")

    # Input.
    data_dir = resolve_data_dir(config.data)
    train_iter = pipeline.train_dataset(
        data_dir, batch_size=parallel.per_process_batch_size(config.batch_size, mesh),
        image_size=config.data.image_size, seed=config.seed, augment=config.data.augment,
        worker_count=config.data.worker_count, shard_index=jax.process_index(), shard_count=jax.process_count())

    # Model, optimizer, shardings and the jitted step.
    model, optimizer, schedule = train_state.make_model_and_optimizer(config)
    repl = parallel.replicated(mesh)
    step_fn = jax.jit(functools.partial(train_step, model, optimizer, schedule, config.loss),
                      in_shardings=(repl, parallel.batch_sharding(mesh), repl), out_shardings=(repl, repl),
                      donate_argnums=0)
    rng = jax.random.key(config.seed)

    # Restore or initialise.
    ckpt = checkpointing.Checkpointer(workdir, keep=config.keep_checkpoints)
    latest = ckpt.latest_step()
    if latest is None:
        identity_images = _identity_images(config, data_dir, mesh)
        state = train_state.create_train_state(model, optimizer, config, rng, repl, identity_images)
        measured = f"; f_id batch-norm statistics measured on {len(identity_images) * config.batch_size} training " \
                   f"images" if identity_images else ""
        logger.info(f"initialised {sum(x.size for x in jax.tree.leaves(state.params)):,} parameters{measured}")
    else:
        state = ckpt.restore(latest, train_state.abstract_train_state(model, optimizer, config, repl), train_iter)
        logger.info(f"resumed from {ckpt.directory}/{latest}")
    step = int(jax.device_get(state.step))

    evaluator = evaluate.Evaluator(model, config, data_dir, mesh)

    def run_eval(step):
        result = evaluator.run({"params": state.params, "batch_stats": state.batch_stats}, step, workdir)
        logger.scalars(step, result.scores, "eval")
        logger.info(evaluate.format_table(result))
        return result

    if step >= config.num_steps:  # the loop below does not run
        logger.info(f"{workdir} is already trained to step {step} (num_steps {config.num_steps}); evaluating it")
        result = run_eval(step)

    # Loop. Step metrics are fetched one step late so that the host never waits for the step in flight.
    window, pending = [], None
    window_start, window_steps = time.perf_counter(), 0

    def consume(step_metrics):
        window.append(jax.device_get(step_metrics))
        if window[-1]["nonfinite_in_a_row"] >= config.max_nonfinite_in_a_row:
            ckpt.close()
            raise NonFiniteLossError(
                f"stopped at step {step}: {config.max_nonfinite_in_a_row} non-finite losses or gradients in a row; "
                f"the last good checkpoint is step {ckpt.latest_step()} in {ckpt.directory}")

    while step < config.num_steps:
        batch = parallel.global_batch(next(train_iter), mesh)
        state, step_metrics = step_fn(state, batch, rng)
        step += 1
        window_steps += 1
        if pending is not None:
            consume(pending)
        pending = step_metrics

        if step % config.log_every == 0 or step == config.num_steps:
            consume(pending)
            pending = None
            elapsed = time.perf_counter() - window_start
            mean = {k: float(np.mean([w[k] for w in window])) for k in window[0]}
            mean["images_per_s"] = window_steps * config.batch_size / elapsed
            logger.scalars(step, mean, "train")
            logger.info(
                f"step {step}/{config.num_steps} | loss {mean['loss']:.4f} (au {mean['loss_au']:.4f}, expr "
                f"{mean['loss_expr']:.4f}, va {mean['loss_va']:.4f}) | lr {mean['lr']:.5f} | "
                f"{mean['images_per_s']:.1f} img/s | skipped {int(window[-1]['nonfinite_total'])} | "
                f"eta {_duration((config.num_steps - step) * elapsed / window_steps)}")
            window.clear()
            window_steps = 0

        if step % config.checkpoint_every == 0 or step == config.num_steps:
            ckpt.save(step, state, train_iter)
        if step % config.eval_every == 0 or step == config.num_steps:
            result = run_eval(step)
        if window_steps == 0:
            window_start = time.perf_counter()

    ckpt.close()
    logger.close()
    return result
