"""Where the PASN towers' initial weights come from (paper §3.2): the one initialisation policy.

In order: random initialisation; each tower's weight file, if one is named; then, for a prior whose identity tower
f_id has no file, f_id's batch-norm statistics measured on training images; then f_expr started from f_id (DLN's
deviation module starts both towers from one face-recognition network) unless f_expr has a file of its own.
What the model is (prior or not, backbone) is read from the built model.
"""

from collections.abc import Mapping, Sequence

import jax
import jax.numpy as jnp

from pasn_jax.models import pasn, torch_import
from pasn_jax.models.layers import BN_MOMENTUM


def tower_files(model: pasn.PASN, weights: Mapping) -> dict[str, str]:
    """{tower: weight file} of the towers that start from a file: f_id and f_expr with the prior, else the single
    backbone from `weights['f_expr']`."""
    files = {"f_id": weights["f_id"], "f_expr": weights["f_expr"]} if model.prior else {"backbone": weights["f_expr"]}
    return {tower: path for tower, path in files.items() if path}


def identity_statistics_batches(model: pasn.PASN, weights: Mapping, batches) -> int:
    """How many training batches f_id's batch-norm statistics are measured on: `batches` (the config's
    `model.identity_stats_batches`) for a prior whose f_id has no weight file, else 0."""
    if not isinstance(batches, int) or batches < 0:
        raise pasn.ModelConfigError(f"model.identity_stats_batches: expected an int >= 0, got {batches!r}")
    return batches if model.prior and not weights["f_id"] else 0


def measure_identity_statistics(model: pasn.PASN, variables, images: Sequence) -> dict:
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
        return jax.tree.map(lambda s: s / (1.0 - BN_MOMENTUM), updated["batch_stats"])

    measured = [batch_statistics(identity["params"], zeros, x) for x in images]
    mean = jax.tree.map(lambda *s: sum(s) / len(s), *measured)
    return pasn.set_tower(variables, "f_id", {"params": identity["params"], "batch_stats": mean})


def initial_variables(model: pasn.PASN, variables, *, files: Mapping[str, str], identity_images: Sequence = (),
                      expr_from_id: bool = True) -> dict:
    """The model's initial variables from its random ones: `files` ({tower: PyTorch weight file}, see
    `tower_files`) read into their towers, f_id's statistics measured on `identity_images`, then f_expr copied
    from f_id when `expr_from_id` and f_expr has no file of its own."""
    for tower, path in files.items():
        variables = torch_import.load_tower(path, variables, tower, model.backbone)
    if identity_images:
        variables = measure_identity_statistics(model, variables, identity_images)
    if model.prior and expr_from_id and "f_expr" not in files:
        variables = pasn.copy_tower(variables, src="f_id", dst="f_expr")
    return variables
