"""SGD with cosine annealing and warm restarts (paper §4.1: lr 0.002, SGD, "cosine annealing warm restart").

The schedule is SGDR (Loshchilov & Hutter), as PyTorch's `CosineAnnealingWarmRestarts`: cycle i lasts
`t0 * t_mult**i` steps and within a cycle lr = eta_min + (lr_max - eta_min) * (1 + cos(pi * t / T_i)) / 2;
an optional linear warm-up precedes the first cycle. Weight decay is added to the gradient before momentum,
as PyTorch's SGD does. Parameters outside `trainable_mask` (the frozen identity tower f_id) get no update and no
optimizer state.
"""

import jax
import jax.numpy as jnp
import optax


def sgdr_schedule(lr: float, t0: int, t_mult: float = 1.0, eta_min: float = 0.0, warmup_steps: int = 0):
    """Returns step -> learning rate: linear warm-up, then cosine cycles of length t0, t0*t_mult, ..."""
    if t0 < 1:
        raise ValueError(f"optim.t0_steps: expected a cycle length >= 1, got {t0}")
    if t_mult < 1:
        raise ValueError(f"optim.t_mult: expected >= 1, got {t_mult}")

    def schedule(step):
        step = jnp.asarray(step, jnp.float32)
        t = jnp.maximum(step - warmup_steps, 0.0)
        if t_mult == 1.0:
            cycle_start, cycle_len = jnp.floor(t / t0) * t0, jnp.float32(t0)
        else:
            # index i of the cycle holding t: t0 * (t_mult**i - 1) / (t_mult - 1) <= t.
            i = jnp.floor(jnp.log1p(t * (t_mult - 1) / t0) / jnp.log(t_mult))
            cycle_start = t0 * (t_mult**i - 1) / (t_mult - 1)
            cycle_len = t0 * t_mult**i
            # float rounding at a boundary: move to the next cycle when t is past this one's end.
            past = t >= cycle_start + cycle_len
            cycle_start = jnp.where(past, cycle_start + cycle_len, cycle_start)
            cycle_len = jnp.where(past, cycle_len * t_mult, cycle_len)
        frac = (t - cycle_start) / cycle_len
        cosine = eta_min + 0.5 * (lr - eta_min) * (1.0 + jnp.cos(jnp.pi * frac))
        if warmup_steps > 0:
            return jnp.where(step < warmup_steps, lr * (step + 1) / warmup_steps, cosine)
        return cosine

    return schedule


OPTIMIZERS = ("sgd", "adam")


def make_optimizer(optim_config, trainable_mask):
    """optax SGD(momentum, nesterov) (the paper's) or Adam (optim.name = 'adam', FECNet's choice for embedding
    training) with the SGDR schedule, + weight decay on the trainable parameters, set_to_zero on the frozen ones.

    Returns (optimizer, schedule).
    """
    schedule = sgdr_schedule(optim_config.lr, optim_config.t0_steps, optim_config.t_mult,
                             optim_config.eta_min, optim_config.warmup_steps)
    name = optim_config.get("name", "sgd")
    if name not in OPTIMIZERS:
        raise ValueError(f"optim.name: expected one of {', '.join(OPTIMIZERS)}, got {name!r}")
    update = (optax.sgd(schedule, momentum=optim_config.momentum or None, nesterov=optim_config.nesterov)
              if name == "sgd" else optax.adam(schedule))
    sgd = optax.chain(optax.add_decayed_weights(optim_config.weight_decay), update)
    labels = jax.tree.map(lambda t: "trainable" if t else "frozen", trainable_mask)
    optimizer = optax.multi_transform({"trainable": sgd, "frozen": optax.set_to_zero()}, labels)
    return optimizer, schedule

