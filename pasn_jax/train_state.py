"""The train state of any task: model variables, optimizer state and the non-finite-step counters, replicated on the
mesh; its initial value and its abstract shape (the restore target)."""

import flax.struct
import jax
import jax.numpy as jnp
import optax

from pasn_jax import optim


@flax.struct.dataclass
class TrainState:
    step: jax.Array  # int32 scalar: train steps run (skipped ones included)
    params: dict
    batch_stats: dict
    opt_state: optax.OptState
    nonfinite_total: jax.Array  # int32: updates skipped for a non-finite loss or gradient
    nonfinite_in_a_row: jax.Array  # int32: of those, how many in a row up to now


def init_variables(model, image_size: int, rng) -> dict:
    """The model's random initial variables, from one image of image_size x image_size (params, batch_stats)."""
    params_rng, dropout_rng = jax.random.split(rng)
    return model.init({"params": params_rng, "dropout": dropout_rng}, jnp.zeros((1, image_size, image_size, 3)),
                      train=False)


def make_optimizer(model, config, trainable_mask):
    """(optimizer, schedule) of `config.optim` for `model`; `trainable_mask(params)` says which leaves train (the
    others get no update and no optimizer state)."""
    abstract = jax.eval_shape(lambda: init_variables(model, config.model.image_size, jax.random.key(0)))
    return optim.make_optimizer(config.optim, trainable_mask(abstract["params"]))


def _train_state(variables, optimizer) -> TrainState:
    params = variables["params"]
    zero = jnp.zeros((), jnp.int32)
    return TrainState(step=zero, params=params, batch_stats=variables.get("batch_stats", {}),
                      opt_state=optimizer.init(params), nonfinite_total=zero, nonfinite_in_a_row=zero)


def create_train_state(variables, optimizer, sharding) -> TrainState:
    """The state at step 0 from initial `variables`, placed on `sharding` (replicated on the mesh)."""
    return jax.jit(lambda v: _train_state(v, optimizer), out_shardings=sharding)(variables)


def abstract_train_state(model, optimizer, image_size: int, sharding) -> TrainState:
    """Shapes, dtypes and shardings of the state without computing it (the restore target)."""
    shapes = jax.eval_shape(lambda: _train_state(init_variables(model, image_size, jax.random.key(0)), optimizer))
    return jax.tree.map(lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sharding), shapes)
