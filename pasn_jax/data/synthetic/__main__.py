"""`python -m pasn_jax.data.synthetic`: renders a synthetic Aff-Wild2 tree (tree.py)."""

import sys

from pasn_jax.data.synthetic.tree import main

sys.exit(main())
