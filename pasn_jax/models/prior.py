"""The prior model: DLN's deviation module, Emb = f_expr(x) - f_id(x) (paper §3.2, ARCHITECTURE.md "Model").

Two towers of the same backbone: f_expr (trained) and f_id (the identity / face-recognition tower, frozen). f_id
always runs in inference mode (running batch-norm statistics, no dropout), so its `batch_stats` never change even
when the module is applied with train=True and mutable=['batch_stats'], and its output passes through
`jax.lax.stop_gradient`. Keeping it out of the optimizer (weight decay, momentum) is `towers.trainable_mask`'s job.
"""

from collections.abc import Callable

import flax.linen as nn
import jax


class DeviationPrior(nn.Module):
    """images [B, S, S, 3] -> Emb [B, embedding_dim] = f_expr(images) - stop_gradient(f_id(images))."""

    tower: Callable[..., nn.Module]  # builds one backbone; called with name='f_expr' and name='f_id'

    @nn.compact
    def __call__(self, images, train: bool = False):
        expression = self.tower(name="f_expr")(images, train=train)
        identity = self.tower(name="f_id")(images, train=False)
        return expression - jax.lax.stop_gradient(identity)
