"""The prior model: DLN's deviation module, Emb = f_expr(x) - f_id(x) (paper §3.2, ARCHITECTURE.md "Model").

Two towers of the same backbone: f_expr (trained) and f_id (the identity / face-recognition tower, frozen). f_id
always runs in inference mode (running batch-norm statistics, no dropout), so its `batch_stats` never change even
when the module is applied with train=True and mutable=['batch_stats'], and its output passes through
`jax.lax.stop_gradient`. Keeping it out of the optimizer (weight decay, momentum) is `towers.trainable_mask`'s job.

Precision: the towers' stages compute in the model's dtype, their heads in float32 (the fc at full precision), so
the embeddings and Emb are float32. Where f_expr is close to f_id (it starts as a copy), Emb is a small difference of
two nearly equal embeddings, which bfloat16 embeddings would carry with an error of 2^-9 |f_id| however small it is.
What remains in bfloat16 is the towers' own error, 2% (IResNet) and 7% (ResNet) of |f_id| for the tiny towers of
tests/test_precision.py: a deviation of f_expr below it takes model.dtype float32 to resolve.
"""

from collections.abc import Callable

import flax.linen as nn
import jax


class DeviationPrior(nn.Module):
    """images [B, S, S, 3] -> Emb [B, embedding_dim] = f_expr(images) - stop_gradient(f_id(images)), float32."""

    tower: Callable[..., nn.Module]  # builds one backbone; called with name='f_expr' and name='f_id'

    @nn.compact
    def __call__(self, images, train: bool = False):
        expression = self.tower(name="f_expr")(images, train=train)
        identity = self.tower(name="f_id")(images, train=False)
        return expression - jax.lax.stop_gradient(identity)  # both float32
