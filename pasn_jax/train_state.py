"""The train state: PASN variables, optimizer state and the non-finite-step counters, replicated on the mesh."""

import flax.struct
import jax
import jax.numpy as jnp
import optax

from pasn_jax import optim
from pasn_jax.models import pasn


@flax.struct.dataclass
class TrainState:
    step: jax.Array  # int32 scalar: train steps run (skipped ones included)
    params: dict
    batch_stats: dict
    opt_state: optax.OptState
    nonfinite_total: jax.Array  # int32: updates skipped for a non-finite loss or gradient
    nonfinite_in_a_row: jax.Array  # int32: of those, how many in a row up to now


def make_model_and_optimizer(config):
    """(model, optimizer, schedule) for a config; the optimizer skips the frozen identity tower."""
    model = pasn.build_model(config.model)
    abstract = jax.eval_shape(lambda: _init_variables(model, config, jax.random.key(0)))
    optimizer, schedule = optim.make_optimizer(config.optim, pasn.trainable_mask(abstract["params"]))
    return model, optimizer, schedule


def _init_variables(model, config, rng):
    size = config.model.image_size
    images = jnp.zeros((1, size, size, 3), jnp.float32)
    params_rng, dropout_rng = jax.random.split(rng)
    variables = model.init({"params": params_rng, "dropout": dropout_rng}, images, train=False)
    if config.model.prior and config.model.init_expr_from_id:
        variables = pasn.copy_tower(variables, src="f_id", dst="f_expr")
    return variables


def init_train_state(model, optimizer, config, rng) -> TrainState:
    variables = _init_variables(model, config, rng)
    params = variables["params"]
    zero = jnp.zeros((), jnp.int32)
    return TrainState(step=zero, params=params, batch_stats=variables.get("batch_stats", {}),
                      opt_state=optimizer.init(params), nonfinite_total=zero, nonfinite_in_a_row=zero)


def create_train_state(model, optimizer, config, rng, sharding) -> TrainState:
    """Initialises the state directly onto `sharding` (replicated on the mesh) in one jitted call."""
    return jax.jit(lambda r: init_train_state(model, optimizer, config, r), out_shardings=sharding)(rng)


def abstract_train_state(model, optimizer, config, sharding) -> TrainState:
    """Shapes, dtypes and shardings of the state without computing it (the restore target)."""
    shapes = jax.eval_shape(lambda: init_train_state(model, optimizer, config, jax.random.key(0)))
    return jax.tree.map(lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sharding), shapes)
