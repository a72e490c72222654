"""The one training loop: `train_and_evaluate(config, workdir)` (paper §4.1; ARCHITECTURE.md "Training recipe").

Sections, in order: config checks, mesh and workdir guard -> task (`config.task`: what is trained, on which data,
with which loss and evaluator) -> input -> model, optimizer and the jitted step -> restore or init -> loop (step,
log, checkpoint, evaluate). The step is data parallel: one `Mesh` over all devices of all processes, the batch split
on `data`, the state replicated and donated. A step whose loss or gradient is not finite leaves the state untouched
and is counted; `max_nonfinite_in_a_row` of them in a row stop the run at the next log line, with the last
checkpoint intact. A preemption signal checkpoints the current step and stops (pasn_jax/preemption.py). The images
reach the step as uint8 and are augmented there (pasn_jax/data/device_augment.py).
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax

from pasn_jax import (checkpointing, config_checks, evaluation, faults, parallel, preemption, tasks, train_state,
                      workdir_config)
from pasn_jax.data import device_augment
from pasn_jax.progress import duration
from pasn_jax.train_log import Logger, MetricsWindow


PREFETCH = 2  # train batches on their way to the devices while a step runs


class NonFiniteLossError(RuntimeError):
    pass


def _bad_records(local: dict, batch_size: int) -> np.ndarray:
    """The batch's flags of records skipped as unreadable (0 where the task's data cannot have any)."""
    return np.asarray(local.get("bad", np.zeros(batch_size)), np.int32)


def train_step(loss, optimizer, schedule, state, batch, rng):
    """One SGD step on the task's loss (PASN: eq. 7); skipped (state kept) when the loss or a gradient is not
    finite. `loss(variables, batch, rng) -> (total, {name: scalar}, new batch_stats)`. The metrics carry the rate
    applied (the schedule at the optimizer's own count: skipped steps do not advance it), the preemption flag
    reduced over all devices and the training records that were skipped as unreadable."""
    dropout_rng = jax.random.fold_in(rng, state.step)
    batch = device_augment.prepare(batch)

    def objective(params):
        total, task_metrics, batch_stats = loss({"params": params, "batch_stats": state.batch_stats}, batch,
                                                dropout_rng)
        return total, (task_metrics, batch_stats)

    (total, (task_metrics, batch_stats)), grads = jax.value_and_grad(objective, has_aux=True)(state.params)
    updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    grad_norm = optax.global_norm(grads)
    finite = jnp.isfinite(total) & jnp.isfinite(grad_norm) & jnp.isfinite(optax.global_norm(updates))
    keep = lambda new, old: jax.tree.map(lambda n, o: jnp.where(finite, n, o), new, old)
    in_a_row = jnp.where(finite, 0, state.nonfinite_in_a_row + 1)
    new_state = state.replace(
        step=state.step + 1, params=keep(params, state.params), batch_stats=keep(batch_stats, state.batch_stats),
        opt_state=keep(opt_state, state.opt_state), nonfinite_total=state.nonfinite_total + (~finite),
        nonfinite_in_a_row=in_a_row)
    step_metrics = {"loss": total, "grad_norm": grad_norm, "lr": schedule(state.step - state.nonfinite_total),
                    "nonfinite_in_a_row": in_a_row, "nonfinite_total": new_state.nonfinite_total,
                    "preempt": jnp.max(batch["preempt"]), "bad_records": jnp.sum(batch["bad"]), **task_metrics}
    return new_state, step_metrics


def _log_line(step: int, num_steps: int, mean: dict, last: dict, seconds_per_step: float) -> str:
    """`step S/N | loss L (task losses) | lr | img/s | skipped | eta`."""
    parts = ", ".join(f"{k.removeprefix('loss_')} {mean[k]:.4f}" for k in sorted(mean) if k.startswith("loss_"))
    bad = f" | {int(mean['bad_records_total'])} unreadable records skipped" if mean["bad_records_total"] else ""
    return (f"step {step}/{num_steps} | loss {mean['loss']:.4f}" + (f" ({parts})" if parts else "")
            + f" | lr {mean['lr']:.5f} | {mean['images_per_s']:.1f} img/s | skipped {int(last['nonfinite_total'])}"
            + bad + f" | eta {duration((num_steps - step) * seconds_per_step)}")


def train_and_evaluate(config, workdir: str) -> evaluation.EvalResult:
    """Trains to `config.num_steps` (resuming from the workdir's latest checkpoint that restores) and returns the
    last evaluation; a workdir already trained that far is only evaluated. A preemption signal from the start on
    (data preparation, initialisation and compiling included) checkpoints the step the run is at and stops."""
    with preemption.PreemptionRequest() as request:
        return _train_and_evaluate(config, workdir, request)


def _train_and_evaluate(config, workdir: str, request: preemption.PreemptionRequest) -> evaluation.EvalResult:
    # Config, mesh, workdir and task.
    mesh = parallel.make_mesh()
    dtype_note = workdir_config.resolve_dtype(workdir, config)
    config_checks.check(config, mesh.size)
    workdir_config.check(workdir, config)
    task = tasks.load(config)
    logger = Logger(workdir)
    logger.info(f"{jax.process_count()} process(es), {jax.device_count()} device(s) "
                f"({jax.devices()[0].platform}); global batch {config.batch_size}"
                + (f"; {dtype_note}" if dtype_note else ""))

    # Input.
    data_dir = task.prepare_data(config)
    local_batch_size = parallel.per_process_batch_size(config.batch_size, mesh)

    # Model, optimizer, shardings and the jitted step.
    model = task.build_model(config, data_dir)
    optimizer, schedule = train_state.make_optimizer(model, config, task.trainable_mask)
    repl = parallel.replicated(mesh)
    step_fn = jax.jit(functools.partial(train_step, task.loss_fn(model, config), optimizer, schedule),
                      in_shardings=(repl, parallel.batch_sharding(mesh), repl), out_shardings=(repl, repl),
                      donate_argnums=0)
    rng = jax.random.key(config.seed)

    # Restore or initialise.
    ckpt = checkpointing.Checkpointer(workdir, keep=config.keep_checkpoints)
    abstract = train_state.abstract_train_state(model, optimizer, config.model.image_size, repl)
    restored = ckpt.restore_latest(abstract, logger.info)
    if restored is None:
        if config.get("init_from"):  # fine-tuning (paper §3.4): a fresh optimizer and schedule
            variables, from_step = checkpointing.variables_like(
                config.init_from, {"params": abstract.params, "batch_stats": abstract.batch_stats})
            note = f"every parameter from {config.init_from} (step {from_step})"
        else:
            variables, note = task.initial_variables(model, config, rng, data_dir, mesh)
        state = train_state.create_train_state(variables, optimizer, repl)
        logger.info(f"initialised {sum(x.size for x in jax.tree.leaves(state.params)):,} parameters"
                    + (f"; {note}" if note else ""))
    else:
        state, latest = restored
        logger.info(f"resumed from {ckpt.directory}/{latest}")
    step = int(jax.device_get(state.step))
    saved = step if restored is not None else None  # the last step written to a checkpoint
    train_iter = task.train_batches(config, data_dir, batch_size=local_batch_size, seed=config.seed, start=step,
                                    worker_count=config.data.worker_count, shard_index=jax.process_index(),
                                    shard_count=jax.process_count())  # the stream's position is the step
    evaluator = task.Evaluator(model, config, data_dir, mesh)

    def run_eval(step):
        result = evaluator.run({"params": state.params, "batch_stats": state.batch_stats}, step, workdir)
        logger.scalars(step, result.scores, "eval")
        logger.images(step, result.images, "eval")
        logger.info(task.format_table(result))
        return result

    def stop_if_asked(mean: dict | None = None):
        """Stops on too many non-finite steps in a row in the window just logged, or on a preemption: with one
        process at once, with several at the log line where every process has seen the flag (`mean`'s max_preempt:
        the flag each process fed into the steps, reduced over all devices), so that all save the same step."""
        if mean is not None and mean["max_nonfinite_in_a_row"] >= config.max_nonfinite_in_a_row:
            ckpt.close()
            raise NonFiniteLossError(
                f"stopped at step {step}: {config.max_nonfinite_in_a_row} non-finite losses or gradients in a row; "
                f"the last good checkpoint is step {ckpt.latest_step()} in {ckpt.directory}")
        alone = jax.process_count() == 1 and request.requested
        if alone or (mean is not None and mean["max_preempt"]):
            if saved != step:
                ckpt.save(step, state)
            ckpt.close()
            logger.close()
            raise preemption.Preempted(step, f"{ckpt.directory}/{step}", request.signal_name or "another process")

    if step >= config.num_steps:  # the loop below does not run
        logger.info(f"{workdir} is already trained to step {step} (num_steps {config.num_steps}); evaluating it")
        result = run_eval(step)

    # Loop: step -> log -> checkpoint -> evaluate. The host dispatches steps without waiting for them: batches go to
    # the devices PREFETCH steps ahead, and the step metrics come back once per log line (MetricsWindow).
    batch_keys = (*task.BATCH_KEYS, *device_augment.AUGMENT_FIELDS)
    device_batches = parallel.prefetch_to_devices(
        ({k: local[k] for k in batch_keys if k in local} | {"bad": _bad_records(local, local_batch_size)}
         for local in train_iter), mesh, PREFETCH)
    window = MetricsWindow(counted=("bad_records",))
    faults.kill_if_armed("start")
    while step < config.num_steps:
        flag = parallel.global_batch({"preempt": np.full(local_batch_size, request.requested, np.int32)}, mesh)
        state, step_metrics = step_fn(state, next(device_batches) | flag, rng)
        step += 1
        faults.kill_if_armed("step")
        window.push(step_metrics)
        stop_if_asked()

        if step % config.log_every == 0 or step == config.num_steps:
            mean, last, seconds_per_step = window.summary(config.batch_size * task.IMAGES_PER_EXAMPLE)
            stop_if_asked(mean)
            logger.scalars(step, mean, "train")
            logger.info(_log_line(step, config.num_steps, mean, last, seconds_per_step))
        if step % config.checkpoint_every == 0 or step == config.num_steps:
            ckpt.save(step, state)
            saved = step
        if step % config.eval_every == 0 or step == config.num_steps:
            result = run_eval(step)
        window.restart_clock()

    ckpt.close()
    logger.close()
    return result
