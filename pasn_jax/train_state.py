"""The train state: PASN variables, optimizer state and the non-finite-step counters, replicated on the mesh."""

import flax.struct
import jax
import jax.numpy as jnp
import optax

from pasn_jax import optim
from pasn_jax.models import iresnet, pasn, torch_import


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
    abstract = jax.eval_shape(lambda: _model_init(model, config, jax.random.key(0)))
    optimizer, schedule = optim.make_optimizer(config.optim, pasn.trainable_mask(abstract["params"]))
    return model, optimizer, schedule


def _model_init(model, config, rng):
    size = config.model.image_size
    params_rng, dropout_rng = jax.random.split(rng)
    return model.init({"params": params_rng, "dropout": dropout_rng}, jnp.zeros((1, size, size, 3)), train=False)


def initial_variables(model, config, rng, identity_images=()) -> dict:
    """Random initialisation, then each tower's PyTorch weight file if the config names one, then f_id's batch-norm
    statistics measured on `identity_images` (see `measure_identity_statistics`), then f_expr started from f_id (DLN's
    deviation module starts both towers from one face-recognition network) unless f_expr has a file of its own.
    Without the prior, `model.weights.f_expr` names the single tower's file."""
    variables = jax.device_get(jax.jit(lambda r: _model_init(model, config, r))(rng))
    weights = config.model.weights
    files = {"f_id": weights.f_id, "f_expr": weights.f_expr} if config.model.prior else {"backbone": weights.f_expr}
    for tower, path in files.items():
        if path:
            variables = torch_import.load_tower(path, variables, tower, config.model.backbone)
    if identity_images:
        variables = measure_identity_statistics(model, variables, identity_images)
    if config.model.prior and config.model.init_expr_from_id and not weights.f_expr:
        variables = pasn.copy_tower(variables, src="f_id", dst="f_expr")
    return variables


def measures_identity_statistics(config) -> bool:
    """True when f_id has no weight file: its batch-norm statistics are then measured on training images before
    the first step (`model.identity_stats_batches` batches; 0 keeps the initial mean 0, variance 1)."""
    batches = config.model.identity_stats_batches
    if not isinstance(batches, int) or batches < 0:
        raise pasn.ModelConfigError(f"model.identity_stats_batches: expected an int >= 0, got {batches!r}")
    return bool(config.model.prior and not config.model.weights.f_id and batches)


def measure_identity_statistics(model, variables, images: list) -> dict:
    """f_id's running batch-norm statistics set to the mean over `images` (global batches) of each layer's batch
    statistics in training mode ("precise BN"). The frozen identity tower always runs in inference mode; a random
    one with its initial statistics (mean 0, variance 1) normalises nothing, so Emb = f_expr - f_id would carry
    f_id's unnormalised output, several times the scale of f_expr's (measured: RMS 4.2 against 1.0 for the demo's
    IResNet), and the heads' tanh saturates early in training (the demo's no_streaming variant: CCC 0 from step
    300 on)."""
    tower = pasn.tower_module(model)
    identity = pasn.get_tower(variables, "f_id")
    zeros = jax.tree.map(jnp.zeros_like, identity["batch_stats"])

    @jax.jit
    def batch_statistics(params, zeros, images):
        _, updated = tower.apply({"params": params, "batch_stats": zeros}, images, train=True,
                                 mutable=["batch_stats"], rngs={"dropout": jax.random.key(0)})
        # running = momentum * 0 + (1 - momentum) * batch statistic
        return jax.tree.map(lambda s: s / (1.0 - iresnet.BN_MOMENTUM), updated["batch_stats"])

    measured = [batch_statistics(identity["params"], zeros, x) for x in images]
    mean = jax.tree.map(lambda *s: sum(s) / len(s), *measured)
    return pasn.set_tower(variables, "f_id", {"params": identity["params"], "batch_stats": mean})


def _train_state(variables, optimizer) -> TrainState:
    params = variables["params"]
    zero = jnp.zeros((), jnp.int32)
    return TrainState(step=zero, params=params, batch_stats=variables.get("batch_stats", {}),
                      opt_state=optimizer.init(params), nonfinite_total=zero, nonfinite_in_a_row=zero)


def create_train_state(model, optimizer, config, rng, sharding, identity_images=()) -> TrainState:
    """The initial state (see `initial_variables`), placed on `sharding` (replicated on the mesh)."""
    variables = initial_variables(model, config, rng, identity_images)  # identical in every process
    return jax.jit(lambda v: _train_state(v, optimizer), out_shardings=sharding)(variables)


def abstract_train_state(model, optimizer, config, sharding) -> TrainState:
    """Shapes, dtypes and shardings of the state without computing it (the restore target)."""
    shapes = jax.eval_shape(lambda: _train_state(_model_init(model, config, jax.random.key(0)), optimizer))
    return jax.tree.map(lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sharding), shapes)
