"""How the towers of a network with the prior (PASN, DLN) start (paper §3.2): the one initialisation policy.

In order: random initialisation; each tower given trained weights (pasn_jax/tower_weights.py finds them) takes
them; then, for a prior whose identity tower f_id was given none, f_id's batch-norm statistics are measured on
training images; then f_expr starts from f_id (DLN's deviation module starts both towers from one face-recognition
network) unless it was given weights of its own. What the model is (prior or not) is read from the built model.
"""

from collections.abc import Mapping, Sequence

import jax
import jax.numpy as jnp

from pasn_jax.models import towers
from pasn_jax.models.layers import BN_MOMENTUM


def has_prior(model) -> bool:
    """Whether the network holds the two towers f_expr and f_id (PASN with prior, DLN)."""
    return getattr(model, "prior", True)


def identity_statistics_batches(model, trained: Sequence[str], batches) -> int:
    """How many training batches f_id's batch-norm statistics are measured on: `batches` (the config's
    `model.identity_stats_batches`) for a prior whose f_id is not among the `trained` towers, else 0."""
    if not isinstance(batches, int) or batches < 0:
        raise towers.ModelConfigError(f"model.identity_stats_batches: expected an int >= 0, got {batches!r}")
    return batches if has_prior(model) and "f_id" not in trained else 0


def measure_identity_statistics(model, variables, images: Sequence) -> dict:
    """f_id's running batch-norm statistics set to the mean over `images` (global batches) of each layer's batch
    statistics in training mode ("precise BN"). The frozen identity tower always runs in inference mode; a random
    one with its initial statistics (mean 0, variance 1) normalises nothing, so Emb = f_expr - f_id would carry
    f_id's unnormalised output, several times the scale of f_expr's (measured: RMS 4.2 against 1.0 for the demo's
    IResNet), and the heads' tanh saturates early in training (the demo's no_streaming variant: CCC 0 from step
    300 on)."""
    tower = towers.tower_module(model)
    identity = towers.get_tower(variables, "f_id")
    zeros = jax.tree.map(jnp.zeros_like, identity["batch_stats"])

    @jax.jit
    def batch_statistics(params, zeros, images):
        _, updated = tower.apply({"params": params, "batch_stats": zeros}, images, train=True,
                                 mutable=["batch_stats"], rngs={"dropout": jax.random.key(0)})
        # running = momentum * 0 + (1 - momentum) * batch statistic
        return jax.tree.map(lambda s: s / (1.0 - BN_MOMENTUM), updated["batch_stats"])

    measured = [batch_statistics(identity["params"], zeros, x) for x in images]
    mean = jax.tree.map(lambda *s: sum(s) / len(s), *measured)
    return towers.set_tower(variables, "f_id", {"params": identity["params"], "batch_stats": mean})


def initial_variables(model, variables, *, trained: Mapping[str, Mapping], identity_images: Sequence = (),
                      expr_from_id: bool = True) -> dict:
    """The model's initial variables from its random ones: the `trained` towers ({tower: {'params',
    'batch_stats'}}) put in place, f_id's statistics measured on `identity_images`, then f_expr copied from f_id
    when `expr_from_id` and f_expr was not given weights of its own."""
    for tower, tower_variables in trained.items():
        variables = towers.set_tower(variables, tower, tower_variables)
    if identity_images:
        variables = measure_identity_statistics(model, variables, identity_images)
    if has_prior(model) and expr_from_id and "f_expr" not in trained:
        variables = towers.copy_tower(variables, src="f_id", dst="f_expr")
    return variables
