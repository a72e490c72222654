"""pasn_jax: the Prior Aided Streaming Network (PASN, ABAW2) in JAX/Flax."""
