"""SGDR schedule against its closed form, and the optimizer's treatment of frozen parameters."""

import math

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from pasn_jax import optim


def sgdr_reference(step, lr, t0, t_mult, eta_min, warmup):
    """PyTorch CosineAnnealingWarmRestarts semantics, written as a plain loop over cycles."""
    if step < warmup:
        return lr * (step + 1) / warmup
    t, length = step - warmup, t0
    while t >= length:
        t -= length
        length *= t_mult
    return eta_min + 0.5 * (lr - eta_min) * (1 + math.cos(math.pi * t / length))


@pytest.mark.parametrize("t0,t_mult,eta_min,warmup", [(10, 1.0, 0.0, 0), (7, 2.0, 1e-4, 0), (5, 3.0, 0.0, 4)])
def test_sgdr_matches_reference(t0, t_mult, eta_min, warmup):
    schedule = optim.sgdr_schedule(0.002, t0, t_mult, eta_min, warmup)
    steps = np.arange(0, 200)
    got = np.array(jax.vmap(schedule)(steps))
    want = np.array([sgdr_reference(int(s), 0.002, t0, t_mult, eta_min, warmup) for s in steps])
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-9)


def test_sgdr_restarts_at_cycle_starts():
    schedule = optim.sgdr_schedule(0.1, 4, 2.0)
    for start in (0, 4, 12, 28):  # cycles of 4, 8, 16, ...
        assert float(schedule(start)) == pytest.approx(0.1)
        assert float(schedule(start + 1)) < 0.1


def test_bad_schedule_arguments_are_named():
    with pytest.raises(ValueError, match="optim.t0_steps"):
        optim.sgdr_schedule(0.1, 0)
    with pytest.raises(ValueError, match="optim.t_mult"):
        optim.sgdr_schedule(0.1, 5, 0.5)


def test_frozen_parameters_get_no_update_and_no_state():
    config = ml_collections.ConfigDict(dict(lr=0.1, momentum=0.9, nesterov=False, weight_decay=0.01,
                                            t0_steps=10, t_mult=1.0, eta_min=0.0, warmup_steps=0))
    params = {"f_expr": {"w": jnp.ones(3)}, "f_id": {"w": jnp.ones(3)}}
    mask = {"f_expr": {"w": True}, "f_id": {"w": False}}
    optimizer, _ = optim.make_optimizer(config, mask)
    state = optimizer.init(params)
    grads = {"f_expr": {"w": jnp.full(3, 2.0)}, "f_id": {"w": jnp.full(3, 2.0)}}
    updates, state = optimizer.update(grads, state, params)
    # SGD with decoupled-into-gradient weight decay, as PyTorch: -lr * (g + wd * p) on the first step.
    np.testing.assert_allclose(updates["f_expr"]["w"], -0.1 * (2.0 + 0.01 * 1.0), rtol=1e-6)
    np.testing.assert_array_equal(updates["f_id"]["w"], 0.0)
    # Momentum buffers exist only for the trainable tower.
    sizes = sum(x.size for x in jax.tree.leaves(state) if hasattr(x, "size") and x.ndim > 0)
    assert sizes == 3
