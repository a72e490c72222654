"""The training command end to end on the smoke config: reruns, guards, non-finite steps, ablations (killed runs:
tests/test_faults.py)."""

import os

import jax
import numpy as np
import pytest
from runs import SMOKE_STEPS, load_state, max_abs_difference, printed_losses, run_main, smoke_args, smoke_run_args


def test_training_changes_parameters_and_lowers_the_loss(smoke_run):
    workdir, stdout = smoke_run
    losses = printed_losses(stdout)
    assert sorted(losses) == list(range(50, SMOKE_STEPS + 1, 50))
    first, last = losses[50], losses[SMOKE_STEPS]
    assert last < first, losses
    state = load_state(workdir)
    assert int(state.step) == SMOKE_STEPS and int(state.nonfinite_total) == 0
    assert sorted(os.listdir(os.path.join(workdir, "checkpoints"))) == ["150", "200"]  # keep_checkpoints=2


def test_rerun_of_a_finished_workdir_only_evaluates(smoke_cache, smoke_run):
    workdir, _ = smoke_run
    before = sorted(os.listdir(os.path.join(workdir, "checkpoints")))
    proc = run_main(smoke_run_args(workdir, smoke_cache))
    assert f"already trained to step {SMOKE_STEPS}" in proc.stdout
    assert f"ABAW2 metrics at step {SMOKE_STEPS} on val" in proc.stdout and not printed_losses(proc.stdout)
    assert sorted(os.listdir(os.path.join(workdir, "checkpoints"))) == before


def test_incompatible_workdir_is_refused(smoke_cache, smoke_run):
    workdir, _ = smoke_run
    before = sorted(os.listdir(os.path.join(workdir, "checkpoints")))
    proc = run_main(smoke_args(workdir, smoke_cache, "--config.model.width=16"), check=False)
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert "model.width: 8 -> 16" in lines[-1] and "config.json" in lines[-1]
    assert sorted(os.listdir(os.path.join(workdir, "checkpoints"))) == before


@pytest.mark.slow  # an end-to-end run (~20 s): make test stays in its budget
def test_nonfinite_steps_are_skipped_then_stop_the_run(smoke_cache, tmp_path):
    """A learning rate of 1e30 blows the parameters up after one good step; every later loss is non-finite, is
    skipped, and the 5th in a row stops the run with the last checkpoint still holding finite parameters."""
    workdir = str(tmp_path / "nan")
    proc = run_main(smoke_args(workdir, smoke_cache, "--config.optim.lr=1e30", "--config.num_steps=50",
                               "--config.checkpoint_every=1", "--config.max_nonfinite_in_a_row=5",
                               "--config.eval_every=1000"), check=False)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "5 non-finite losses or gradients in a row" in proc.stderr.strip().splitlines()[-1]
    state = load_state(workdir)
    assert int(state.nonfinite_in_a_row) >= 1
    assert all(np.all(np.isfinite(x)) for x in jax.tree.leaves(state.params))


@pytest.mark.slow
@pytest.mark.parametrize("variant", ["no_prior", "no_streaming"])
def test_ablation_variants_train(smoke_cache, tmp_path, variant):
    workdir = str(tmp_path / variant)
    proc = run_main(smoke_args(workdir, smoke_cache, "--config.num_steps=2", "--config.log_every=1",
                               config=f"smoke,{variant}"))
    losses = printed_losses(proc.stdout)
    assert sorted(losses) == [1, 2] and all(np.isfinite(list(losses.values())))
    state = load_state(workdir, f"smoke,{variant}")
    if variant == "no_prior":
        assert set(state.params) == {"backbone", "heads"}
    else:
        assert "au_to_expr" not in state.params["heads"] and "au_expr_to_va" not in state.params["heads"]


def test_unknown_override_names_the_key(smoke_cache, tmp_path):
    proc = run_main(smoke_args(str(tmp_path / "w"), smoke_cache, "--config.optim.learning_rate=0.1"), check=False)
    assert proc.returncode != 0
    assert "learning_rate" in proc.stderr


def test_missing_data_says_how_to_convert_or_run_the_demo(tmp_path):
    proc = run_main(["--config=configs/abaw.py", f"--workdir={tmp_path / 'w'}"], check=False)
    assert proc.returncode == 1
    line = proc.stderr.strip().splitlines()[-1]
    assert "python -m pasn_jax.data.convert affwild2" in line and "configs/abaw.py:demo" in line


def test_identity_tower_starts_from_a_pytorch_file_and_stays_frozen(smoke_cache, tmp_path):
    """--config.model.weights.f_id=FILE: f_id holds the file's weights after training (frozen), and f_expr
    started from them too (DLN) and then trained away from them."""
    import torch
    from benchmarks import torch_reference

    from pasn_jax.models import torch_import, towers

    path = str(tmp_path / "f_id.pth")
    torch.manual_seed(0)
    torch.save(torch_reference.build_tower("iresnet18", width=8, layers=(1, 1, 1, 1), embedding_dim=32,
                                           image_size=32).state_dict(), path)
    workdir = str(tmp_path / "w")
    proc = run_main(smoke_args(workdir, smoke_cache, f"--config.model.weights.f_id={path}", "--config.num_steps=3",
                               "--config.eval_every=1000"))
    assert f"{path}: loaded" in proc.stdout and "into tower 'f_id'" in proc.stdout
    state = load_state(workdir)
    variables = {"params": state.params, "batch_stats": state.batch_stats}
    expected = torch_import.tower_from_torch(torch_import.load_state_dict(path), towers.get_tower(variables, "f_id"),
                                             "iresnet18")
    assert max_abs_difference(towers.get_tower(variables, "f_id"), expected) == 0.0
    expr_kernel = state.params["prior"]["f_expr"]["conv1"]["kernel"]
    id_kernel = state.params["prior"]["f_id"]["conv1"]["kernel"]
    assert 0 < np.max(np.abs(expr_kernel - id_kernel)) < 0.5 * np.max(np.abs(id_kernel))  # 3 steps from f_id


def test_the_steady_state_loop_fetches_once_per_log_line(smoke_cache, tmp_path, monkeypatch):
    """Between two log lines (no checkpoint, no evaluation) the host brings device values over once, through
    train_log.fetch, and reads no other device value: every `np.asarray`, `float()` or `jax.device_get` of a
    jax.Array goes through ArrayImpl._value, counted here against the leaves `fetch` brought."""
    from jax._src.array import ArrayImpl

    from configs import abaw
    from pasn_jax import train, train_log

    config = abaw.get_config("smoke")
    config.data.synthetic.cache_dir = smoke_cache
    config.num_steps, config.log_every, config.checkpoint_every, config.eval_every = 12, 4, 1000, 1000
    reads, leaves, marks = [0], [0], []
    value = ArrayImpl._value

    def counted_value(array):
        reads[0] += 1
        return value.fget(array)

    def counted_fetch(tree, fetch=train_log.fetch):
        leaves[0] += len(jax.tree.leaves(tree))
        return fetch(tree)

    def marked_scalars(logger, step, values, prefix, scalars=train_log.Logger.scalars):
        if prefix == "train":
            marks.append((step, train_log.fetches, leaves[0], reads[0]))
        scalars(logger, step, values, prefix)

    monkeypatch.setattr(ArrayImpl, "_value", property(counted_value))
    monkeypatch.setattr(train_log, "fetch", counted_fetch)
    monkeypatch.setattr(train_log.Logger, "scalars", marked_scalars)
    train.train_and_evaluate(config, str(tmp_path / "run"))
    (step_a, fetches_a, leaves_a, reads_a), (step_b, fetches_b, leaves_b, reads_b) = marks[:2]
    assert (step_a, step_b) == (4, 8)
    assert fetches_b - fetches_a == 1
    assert leaves_b - leaves_a > 10 and reads_b - reads_a == leaves_b - leaves_a
