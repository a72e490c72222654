"""`--mode=eval`: restore a checkpoint of a workdir and run its task's evaluator (PASN: the ABAW2 metrics of paper
§4.2 over a whole split, written to `workdir/eval/<step>/`, or `eval/<step>/<split>/` for a split other than the
one training evaluates); `--mode=predict`: PASN's predictions on frames without labels (config.predict), written to
`workdir/predict/<step>/predictions.csv`."""

import jax

from pasn_jax import checkpointing, config_checks, evaluation, parallel, paths, predictions, tasks, workdir_config


def restore(config, workdir: str, step: int | None = None):
    """(task, model, variables, data_dir, mesh, step) of a workdir's checkpoint (the latest, or `step`): only its
    parameters and batch statistics, replicated on this run's mesh (any device and process count)."""
    mesh = parallel.make_mesh()
    dtype_note = workdir_config.resolve_dtype(workdir, config)
    if dtype_note and jax.process_index() == 0:
        print(dtype_note, flush=True)
    config_checks.check(config, mesh.size)
    workdir_config.check(workdir, config, write=False)
    task = tasks.load(config)
    variables, step = checkpointing.read_variables(workdir, step, parallel.replicated(mesh))
    data_dir = task.prepare_data(config)
    return task, task.build_model(config, data_dir), variables, data_dir, mesh, step


def evaluate(config, workdir: str, step: int | None = None) -> evaluation.EvalResult:
    """Restores a checkpoint of `workdir` (the latest, or `step`) and evaluates it on `config.eval.split`."""
    task, model, variables, data_dir, mesh, step = restore(config, workdir, step)
    evaluator = task.Evaluator(model, config, data_dir, mesh)
    result = evaluator.run(variables, step, workdir)
    if jax.process_index() == 0:
        print(task.format_table(result), flush=True)
        print(f"wrote {evaluation.eval_dir(workdir, step, config.eval.get('split'))}", flush=True)
    return result


def predict(config, workdir: str, step: int | None = None) -> str:
    """PASN's predictions on config.predict's frames (no labels): returns the predictions.csv written."""
    if config.get("task", tasks.DEFAULT_TASK) != "pasn":
        raise ValueError(f"--mode=predict: the task {config.task!r} predicts no frames (only pasn does)")
    task, model, variables, data_dir, mesh, step = restore(config, workdir, step)
    source = task.predict_source(config, data_dir)
    p = task.Evaluator(model, config, data_dir, mesh).predict(variables, source)
    path = paths.join(workdir, "predict", str(step), "predictions.csv")
    if jax.process_index() == 0:
        paths.makedirs(paths.path(path).parent)
        predictions.write_predictions(path, {k: p[k] for k in ("video", "frame", "au_prob", "expr_prob", "va_pred")})
        print(f"wrote {path}: {len(p['frame'])} frames of {len(source.videos)} videos in {source.root} (step {step})",
              flush=True)
    return path
