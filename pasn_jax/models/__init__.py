"""Networks (Flax linen, pure init/apply): backbones, prior model, streaming heads, PASN."""
