"""The whole PASN network assembled from a config (paper Fig. 1, ARCHITECTURE.md "Model").

images [B, S, S, 3] in [-1, 1] -> backbone tower(s) -> Emb [B, embedding_dim] -> heads ->
{'au': [B, 12] logits, 'expr': [B, 7] logits, 'va': [B, 2] in (-1, 1)}.

Precision: the towers' convolutional stages compute in `dtype` (model.dtype: bfloat16 on GPU/TPU); their heads (the
last batch norms and fc), Emb, the streaming/parallel heads and so the outputs and losses are float32 whatever it is
(models/prior.py says why). Parameters and batch statistics are float32 in every case.

Parameter tree: prior on -> params['prior']['f_expr'], params['prior']['f_id'] (the two DLN towers);
prior off -> params['backbone'] (one tower, the paper's "w/o prior model" ablation uses backbone='resnet50');
heads -> params['heads'] (streaming or parallel). `batch_stats` mirrors the towers' part of that tree.
"""

import functools
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from pasn_jax.models import towers
from pasn_jax.models.iresnet import IRESNET_LAYERS
from pasn_jax.models.prior import DeviationPrior
from pasn_jax.models.streaming import ParallelHeads, StreamingHeads


class PASN(nn.Module):
    """Prior Aided Streaming Network; fields as in `build_model`'s model_config."""

    backbone: str = "iresnet50"
    width: int = 64
    layers: tuple[int, ...] = IRESNET_LAYERS["iresnet50"]
    embedding_dim: int = 512
    image_size: int = 112
    prior: bool = True
    streaming: bool = True
    dropout: float = 0.0
    dtype: Any = jnp.float32
    kernels: str = "auto"  # the towers' layers (layers.resolve_kernels)

    @nn.compact
    def __call__(self, images, train: bool = False):
        towers.check_images(images, self.image_size)
        tower = functools.partial(towers.tower_module, self)
        if self.prior:
            emb = DeviationPrior(tower, name="prior")(images, train=train)
        else:
            emb = tower(name="backbone")(images, train=train)
        heads = StreamingHeads if self.streaming else ParallelHeads
        return heads(name="heads")(emb)  # float32


def build_model(model_config) -> PASN:
    """PASN from a config with fields backbone, width, layers, embedding_dim, image_size, prior, streaming,
    dropout, dtype (see ARCHITECTURE.md "Model"); raises ModelConfigError naming a bad field."""
    return PASN(**towers.tower_fields(model_config), prior=bool(towers.field(model_config, "prior")),
                streaming=bool(towers.field(model_config, "streaming")))
