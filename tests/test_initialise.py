"""The towers' initialisation policy: the identity tower's batch-norm statistics measured on training images when it
has no weight file (precise BN), checked against the layers' own batch statistics computed independently; f_expr
started from f_id."""

import jax
import numpy as np
import pytest

from configs import abaw
from pasn_jax import train_state
from pasn_jax.models import initialise, pasn, towers


@pytest.fixture(scope="module")
def smoke():
    config = abaw.get_config("smoke")
    config.model.dropout = 0.0
    return config, pasn.build_model(config.model)


def initial_variables(model, identity_images=()):
    variables = jax.jit(lambda r: train_state.init_variables(model, model.image_size, r))(jax.random.key(0))
    return initialise.initial_variables(model, variables, trained={}, identity_images=identity_images)


def images(seed, batch=8, size=32):
    return jax.random.uniform(jax.random.key(seed), (batch, size, size, 3), minval=-1, maxval=1)


def test_one_batch_makes_inference_mode_equal_training_mode_on_it(smoke):
    config, model = smoke
    variables = initial_variables(model)
    x = images(1)
    measured = initialise.measure_identity_statistics(model, variables, [x])
    tower = towers.tower_module(model)
    in_training = jax.jit(lambda v, x: tower.apply(v, x, train=True, mutable=["batch_stats"])[0])
    in_inference = jax.jit(lambda v, x: tower.apply(v, x, train=False))
    before, after = towers.get_tower(variables, "f_id"), towers.get_tower(measured, "f_id")
    training = in_training(before, x)
    np.testing.assert_allclose(in_inference(after, x), training, atol=1e-4, rtol=1e-4)
    # the initial statistics (mean 0, variance 1) normalise nothing: far from training mode
    assert np.max(np.abs(in_inference(before, x) - training)) > 0.5
    assert jax.tree.all(jax.tree.map(np.array_equal, measured["params"], variables["params"]))
    assert jax.tree.all(jax.tree.map(np.array_equal, towers.get_tower(measured, "f_expr"),
                                     towers.get_tower(variables, "f_expr")))


def test_statistics_are_the_mean_over_batches_of_each_batch_statistic(smoke):
    config, model = smoke
    variables = initial_variables(model)
    batches = [images(2), images(3)]
    stats = towers.get_tower(initialise.measure_identity_statistics(model, variables, batches), "f_id")["batch_stats"]
    kernel = np.asarray(towers.get_tower(variables, "f_id")["params"]["conv1"]["kernel"])  # [3, 3, 3, width]
    means, variances = [], []
    for x in batches:  # the first batch norm's input: conv1 (3x3, padding 1), in numpy
        x = np.pad(np.asarray(x, np.float64), ((0, 0), (1, 1), (1, 1), (0, 0)))
        out = sum(x[:, i:i + 32, j:j + 32, :] @ kernel[i, j] for i in range(3) for j in range(3))
        means.append(out.mean(axis=(0, 1, 2)))
        variances.append(out.var(axis=(0, 1, 2)))
    np.testing.assert_allclose(stats["bn1"]["mean"], np.mean(means, axis=0), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(stats["bn1"]["var"], np.mean(variances, axis=0), rtol=1e-4, atol=1e-5)


def test_initial_variables_start_f_expr_from_the_measured_f_id(smoke):
    config, model = smoke
    x = images(4)
    variables = initial_variables(model, [x])
    f_id, f_expr = towers.get_tower(variables, "f_id"), towers.get_tower(variables, "f_expr")
    assert jax.tree.all(jax.tree.map(np.array_equal, f_expr, f_id))
    assert not np.allclose(f_id["batch_stats"]["bn1"]["var"], 1.0)

    # Emb = f_expr - f_id in training: f_expr normalises with the batch's statistics, f_id with its running ones;
    # measured on this batch they are the same, so Emb is 0 on it (without the measurement it is not)
    @jax.jit
    def emb(variables):
        _, state = model.apply(variables, x, train=True, mutable=["batch_stats", "intermediates"],
                               capture_intermediates=lambda module, method: module.name == "prior")
        return state["intermediates"]["prior"]["__call__"][0]

    np.testing.assert_allclose(emb(variables), 0.0, atol=1e-4)
    assert np.sqrt(np.mean(emb(initial_variables(model)) ** 2)) > 0.1


@pytest.mark.parametrize("prior, trained, batches, expected", [
    (True, [], 8, 8), (True, [], 0, 0), (True, ["f_id"], 8, 0), (True, ["f_expr"], 8, 8), (False, [], 8, 0)])
def test_measured_only_for_a_prior_without_identity_weights(prior, trained, batches, expected):
    config = abaw.get_config("smoke")
    config.model.prior = prior
    model = pasn.build_model(config.model)
    assert initialise.identity_statistics_batches(model, trained, batches) == expected


def test_a_negative_batch_count_is_named():
    model = pasn.build_model(abaw.get_config("smoke").model)
    with pytest.raises(towers.ModelConfigError, match=r"model.identity_stats_batches: expected an int >= 0, got -1"):
        initialise.identity_statistics_batches(model, [], -1)
