r"""PASN on Aff-Wild2 (ABAW2), the paper's recipe (§4.1), and its variants.

Train on converted Aff-Wild2 shards (see the README for the conversion), then evaluate:

  python -m pasn_jax.main --config=configs/abaw.py --workdir=runs/abaw --config.data.dir=/data/affwild2_shards
  python -m pasn_jax.main --config=configs/abaw.py --workdir=runs/abaw --config.data.dir=/data/affwild2_shards \
      --mode=eval

Variants, selected as `configs/abaw.py:VARIANT`:

  demo          the embedded default: renders the synthetic Aff-Wild2 into a cache folder on first use, converts
                it to shards, trains a small PASN on 2 CPU cores in minutes and evaluates it on unseen identities.
                  python -m pasn_jax.main --config=configs/abaw.py:demo --workdir=runs/demo
  smoke         seconds; a tiny synthetic set and network, for tests.
                  python -m pasn_jax.main --config=configs/abaw.py:smoke --workdir=/tmp/smoke
  no_prior      the paper's "w/o prior model" ablation: one ResNet-50 tower instead of f_expr - f_id.
                  python -m pasn_jax.main --config=configs/abaw.py:no_prior --workdir=runs/no_prior \
                      --config.data.dir=/data/affwild2_shards
  no_streaming  the paper's "w/o streaming model" ablation: parallel heads, no AU->EXPR, {AU,EXPR}->VA.
                  python -m pasn_jax.main --config=configs/abaw.py:no_streaming --workdir=runs/no_streaming \
                      --config.data.dir=/data/affwild2_shards

Variants combine with commas (`configs/abaw.py:demo,no_streaming`). Any key can be overridden with
`--config.KEY=VALUE`; configs/README.md lists every key.
"""

import ml_collections

VARIANTS = ("demo", "smoke", "no_prior", "no_streaming")


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    variants = [v for v in (arg or "").split(",") if v]
    for v in variants:
        if v not in VARIANTS:
            raise ValueError(f"configs/abaw.py: unknown variant {v!r}; expected one of {', '.join(VARIANTS)}")

    c = ml_collections.ConfigDict()
    c.task = "pasn"  # the training task (pasn_jax/tasks)
    c.seed = 0
    c.batch_size = 80  # global, over all devices and processes (paper §4.1)
    c.num_steps = 100_000
    c.log_every = 100
    c.eval_every = 5_000
    c.checkpoint_every = 1_000
    c.keep_checkpoints = 3
    c.max_nonfinite_in_a_row = 20  # consecutive non-finite losses/gradients that stop the run

    c.data = ml_collections.ConfigDict()
    c.data.dir = ""  # converted Aff-Wild2 shards (python -m pasn_jax.data.convert affwild2 ...)
    c.data.source = "shards"  # "shards": read data.dir; "synthetic": render + convert into data.synthetic.cache_dir
    c.data.image_size = 224
    c.data.worker_count = 0
    c.data.eval_batch_size = 80  # global
    c.data.augment = ml_collections.ConfigDict(dict(
        random_resized_crop=True, crop_scale=(0.8, 1.0), crop_ratio=(0.9, 1.1), hflip=True, color_jitter=0.2))
    c.data.synthetic = ml_collections.ConfigDict(dict(
        cache_dir="~/.cache/pasn_jax", videos=64, frames=150, size=112, seed=0, num_shards=4))

    c.model = ml_collections.ConfigDict()
    c.model.backbone = "iresnet50"
    c.model.width = 64
    c.model.layers = None  # None: the named depth; e.g. (1, 1, 1, 1) for a tiny network
    c.model.embedding_dim = 512
    c.model.image_size = c.data.get_ref("image_size")
    c.model.prior = True
    c.model.streaming = True
    c.model.dropout = 0.0
    c.model.dtype = "float32"
    c.model.init_expr_from_id = True  # DLN: both towers start from the same face-recognition network
    c.model.identity_stats_batches = 8  # f_id without a weight file: batch-norm statistics from 8 training batches
    c.model.weights = ml_collections.ConfigDict(dict(f_expr="", f_id=""))  # PyTorch state_dict files per tower

    c.loss = ml_collections.ConfigDict(dict(smoothing=0.9, au=1.0, expr=1.0, va=1.0))

    c.optim = ml_collections.ConfigDict(dict(
        lr=0.002, momentum=0.9, nesterov=False, weight_decay=5e-4,
        t0_steps=10_000, t_mult=2.0, eta_min=0.0, warmup_steps=0))

    c.eval = ml_collections.ConfigDict(dict(step=-1, split="val"))  # step -1: the latest checkpoint

    if "no_prior" in variants:
        c.model.prior = False
        c.model.backbone = "resnet50"
    if "no_streaming" in variants:
        c.model.streaming = False
    if "demo" in variants:
        _demo(c)
    if "smoke" in variants:
        _smoke(c)
    return c


def _demo(c):
    """A small PASN on the synthetic Aff-Wild2: minutes on 2 CPU cores (README, "Demo results")."""
    c.data.source = "synthetic"
    c.data.image_size = 64
    c.data.synthetic.update(videos=64, frames=150, size=112, seed=0, num_shards=4)  # 48 train, 16 val people
    c.data.augment.update(crop_scale=(0.85, 1.0), color_jitter=0.1)
    c.model.update(backbone="iresnet18" if c.model.prior else "resnet50", width=16, layers=(1, 1, 1, 1),
                   embedding_dim=512)
    c.batch_size = 32
    c.data.eval_batch_size = 128
    c.num_steps = 1_500
    c.log_every = 100
    c.eval_every = 500
    c.checkpoint_every = 500
    c.optim.update(lr=0.01, t0_steps=1_500, t_mult=1.0, warmup_steps=100)


def _smoke(c):
    """Seconds: a tiny synthetic set and network, for tests."""
    c.data.source = "synthetic"
    c.data.image_size = 32
    c.data.synthetic.update(videos=6, frames=12, size=48, seed=0, num_shards=2)
    c.data.augment.update(color_jitter=0.0)
    c.model.update(backbone="iresnet18" if c.model.prior else "resnet50", width=8, layers=(1, 1, 1, 1),
                   embedding_dim=32)
    c.batch_size = 8
    c.data.eval_batch_size = 16
    c.num_steps = 20
    c.log_every = 5
    c.eval_every = 20
    c.checkpoint_every = 10
    c.optim.update(lr=0.01, t0_steps=10, warmup_steps=0)
