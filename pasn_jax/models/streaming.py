"""The streaming model: extractors, AU->EXPR and {AU,EXPR}->VA translators, predictors (paper §3.3).

Sizes from the paper / ARCHITECTURE.md "Model": Emb (512) -> AU feature 12x16, EXPR feature 64, VA feature 64;
AU->EXPR maps the AU feature to 64 and is concatenated with the EXPR feature (128) for the EXPR predictor;
{AU,EXPR}->VA maps both to 64, concatenated with the VA feature (128) for the VA predictor. Outputs: 12 AU logits,
7 EXPR logits, 2 VA values through tanh.

Choices where the paper is silent:
- activation: GELU everywhere in the heads (never exactly flat, so no unit can die on a small batch);
- extractors: one dense layer + GELU each (Emb -> 192 reshaped to 12x16, Emb -> 64, Emb -> 64);
- AU predictor: one small MLP per AU with its own weights (16 -> 16 GELU -> 1), so the AU feature's row j is the
  feature of AU j, as the 12x16 shape suggests;
- translators: two dense layers of 64 with GELU. AU->EXPR reads the flattened AU feature (192);
  {AU,EXPR}->VA reads the flattened AU feature and the EXPR predictor's input (EXPR feature + AU->EXPR, 128), so the
  VA loss reaches both earlier stages ("joint features", §3.3);
- EXPR / VA predictors: dense 64 + GELU -> dense 7 (logits) / dense 2 -> tanh.
The parallel-heads variant ("w/o streaming model", Tab. 3) drops both translators: each predictor reads its own
feature only (EXPR and VA predictors then read 64 instead of 128).

The heads compute in float32 (their parameters' dtype and Emb's; under 1 MFLOP per image) whatever the towers'
dtype: Emb is a small difference of two towers' embeddings (models/prior.py), which bfloat16 would round away.
"""

import flax.linen as nn
import jax.numpy as jnp

from pasn_jax.labels import NUM_AUS, NUM_EXPRS, NUM_VA

AU_FEATURE_DIM = 16
EXPR_FEATURE_DIM = 64
VA_FEATURE_DIM = 64
TRANSLATOR_DIM = 64
PREDICTOR_HIDDEN = 64
activation = nn.gelu


class PerAUDense(nn.Module):
    """A dense layer applied to each AU's feature row with its own weights: [B, 12, d_in] -> [B, 12, features]."""

    features: int

    @nn.compact
    def __call__(self, x):
        num_aus, d_in = x.shape[-2:]
        kernel_init = nn.initializers.variance_scaling(1.0, "fan_in", "truncated_normal", batch_axis=(0,))
        kernel = self.param("kernel", kernel_init, (num_aus, d_in, self.features))  # [12, d_in, features]
        bias = self.param("bias", nn.initializers.zeros, (num_aus, self.features))
        return jnp.einsum("bai,aio->bao", x, kernel) + bias


class MLP(nn.Module):
    """Dense layers of the given sizes with GELU between them (and after the last one when final_activation)."""

    sizes: tuple[int, ...]
    final_activation: bool = False

    @nn.compact
    def __call__(self, x):
        for i, size in enumerate(self.sizes):
            x = nn.Dense(size, name=f"dense{i}")(x)
            if i < len(self.sizes) - 1 or self.final_activation:
                x = activation(x)
        return x


class AUPredictor(nn.Module):
    """AU feature [B, 12, 16] -> AU logits [B, 12] (per-AU MLP 16 -> 16 -> 1)."""

    @nn.compact
    def __call__(self, au_feature):
        x = activation(PerAUDense(AU_FEATURE_DIM, name="dense0")(au_feature))
        return PerAUDense(1, name="dense1")(x)[..., 0]


def extractors(emb):
    """Emb [B, E] -> AU feature [B, 12, 16], EXPR feature [B, 64], VA feature [B, 64] (called in a compact scope)."""
    au_feature = MLP((NUM_AUS * AU_FEATURE_DIM,), True, name="au_extractor")(emb)
    au_feature = au_feature.reshape(emb.shape[0], NUM_AUS, AU_FEATURE_DIM)
    expr_feature = MLP((EXPR_FEATURE_DIM,), True, name="expr_extractor")(emb)
    va_feature = MLP((VA_FEATURE_DIM,), True, name="va_extractor")(emb)
    return au_feature, expr_feature, va_feature


class StreamingHeads(nn.Module):
    """Emb [B, E] -> {'au': [B, 12] logits, 'expr': [B, 7] logits, 'va': [B, 2] in (-1, 1)}; AU -> EXPR -> VA."""

    @nn.compact
    def __call__(self, emb):
        au_feature, expr_feature, va_feature = extractors(emb)
        au_flat = au_feature.reshape(emb.shape[0], -1)  # [B, 192]
        au = AUPredictor(name="au_predictor")(au_feature)
        au_to_expr = MLP((TRANSLATOR_DIM, TRANSLATOR_DIM), True, name="au_to_expr")(au_flat)
        expr_joint = jnp.concatenate([expr_feature, au_to_expr], axis=-1)  # [B, 128]
        expr = MLP((PREDICTOR_HIDDEN, NUM_EXPRS), False, name="expr_predictor")(expr_joint)
        au_expr_to_va = MLP((TRANSLATOR_DIM, TRANSLATOR_DIM), True, name="au_expr_to_va")(
            jnp.concatenate([au_flat, expr_joint], axis=-1))  # [B, 192 + 128] -> [B, 64]
        va_joint = jnp.concatenate([va_feature, au_expr_to_va], axis=-1)  # [B, 128]
        va = jnp.tanh(MLP((PREDICTOR_HIDDEN, NUM_VA), False, name="va_predictor")(va_joint))
        return {"au": au, "expr": expr, "va": va}


class ParallelHeads(nn.Module):
    """The "w/o streaming model" ablation: the same extractors and predictors, no translators."""

    @nn.compact
    def __call__(self, emb):
        au_feature, expr_feature, va_feature = extractors(emb)
        au = AUPredictor(name="au_predictor")(au_feature)
        expr = MLP((PREDICTOR_HIDDEN, NUM_EXPRS), False, name="expr_predictor")(expr_feature)
        va = jnp.tanh(MLP((PREDICTOR_HIDDEN, NUM_VA), False, name="va_predictor")(va_feature))
        return {"au": au, "expr": expr, "va": va}
