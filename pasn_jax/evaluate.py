"""`--mode=eval`: restore a checkpoint of a workdir and run its task's evaluator (PASN: the ABAW2 metrics of paper
§4.2 over a whole split, written to `workdir/eval/<step>/`)."""

import jax

from pasn_jax import checkpointing, config_checks, evaluation, parallel, tasks, train_state, workdir_config


def evaluate(config, workdir: str, step: int | None = None) -> evaluation.EvalResult:
    """Restores a checkpoint of `workdir` (the latest, or `step`) and evaluates it on `config.eval.split`."""
    mesh = parallel.make_mesh()
    dtype_note = workdir_config.resolve_dtype(workdir, config)
    if dtype_note and jax.process_index() == 0:
        print(dtype_note, flush=True)
    config_checks.check(config, mesh.size)
    workdir_config.check(workdir, config, write=False)
    task = tasks.load(config)
    ckpt = checkpointing.Checkpointer(workdir, read_only=True)
    if step is None:
        step = ckpt.latest_step()
        if step is None:
            raise FileNotFoundError(f"{ckpt.directory}: no checkpoint to evaluate; train first (--mode=train)")
    data_dir = task.prepare_data(config)
    model = task.build_model(config, data_dir)
    optimizer, _ = train_state.make_optimizer(model, config, task.trainable_mask)
    abstract = train_state.abstract_train_state(model, optimizer, config.model.image_size, parallel.replicated(mesh))
    state = ckpt.restore(step, abstract)
    ckpt.close()
    evaluator = task.Evaluator(model, config, data_dir, mesh)
    result = evaluator.run({"params": state.params, "batch_stats": state.batch_stats}, step, workdir)
    if jax.process_index() == 0:
        print(task.format_table(result), flush=True)
        print(f"wrote {evaluation.eval_dir(workdir, step)}", flush=True)
    return result
