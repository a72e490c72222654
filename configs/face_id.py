r"""Stage 1 of the prior (paper §3.2): the identity tower f_id trained as a face-recognition network (ArcFace), on
insightface's training sets converted to shards or on the synthetic identities.

  python -m pasn_jax.data.convert insightface --root /data/ms1mv3 --out /data/ms1mv3_shards
  python -m pasn_jax.main --config=configs/face_id.py --workdir=runs/face_id --config.data.dir=/data/ms1mv3_shards

Variants, selected as `configs/face_id.py:VARIANT`:

  demo   the embedded default: synthetic people rendered on first use, the demo's small ResNet tower at 32 px,
         half PASN's (stage 1 of `make demo`):
           python -m pasn_jax.main --config=configs/face_id.py:demo --workdir=runs/demo/face_id
  smoke  seconds; a tiny set and network, for tests.
  cosface  CosFace's additive cosine margin (s = 64, m = 0.35) instead of ArcFace's angular one.

The tower fields (model.*) must be PASN's (configs/abaw.py) for PASN to take this f_id.
"""

import ml_collections

from configs import common

VARIANTS = ("demo", "smoke", "cosface")


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    variants = [v for v in (arg or "").split(",") if v]
    common.check_variants("configs/face_id.py", variants, VARIANTS)

    c = common.base_config("face_id")
    c.batch_size = 128
    c.data.image_size = 112  # insightface's training sets are 112 x 112
    c.data.synthetic = ml_collections.ConfigDict(dict(
        cache_dir="~/.cache/pasn_jax", identities=2000, images=16, held_out=200, pairs=2000, size=112, seed=0,
        num_shards=4))
    c.face_id = ml_collections.ConfigDict(dict(loss="arcface", scale=64.0, margin=0.5, num_classes=0))
    c.optim.update(lr=0.1, t0_steps=100_000, t_mult=1.0, warmup_steps=1_000)
    c.eval.verification = ()  # .bin pair sets besides those in data.dir

    if "cosface" in variants:
        c.face_id.update(loss="cosface", margin=0.35)
    if "demo" in variants:
        _demo(c)
    if "smoke" in variants:
        _smoke(c)
    return c


def _demo(c):
    """Stage 1 of `make demo`: minutes on 2 CPU cores."""
    c.data.source = "synthetic"
    c.data.synthetic.update(identities=1000, images=12, held_out=100, pairs=1200)
    c.data.augment.update(crop_scale=(0.85, 1.0), color_jitter=0.1)
    common.use_tower(c, common.DEMO_RESNET_TOWER, common.DEMO_FACE_ID_IMAGE_SIZE)
    # The ResNet tower at 32 px, half PASN's size (configs/common.py): verification 0.939 after a 1,000-step schedule,
    # 0.965 after 2,000 (0.957 at step 1,500), in 1 min 50 s on 2 cores; the IResNet tower reached 0.968 after
    # 1,000 steps in 2 min 45 s. ArcFace with s = 32, m = 0.3 rather than the paper-scale s = 64, m = 0.5: at 64 px
    # on 1,000 synthetic people of 12 images each (IResNet) the latter verifies 0.83 after 600 steps, the former
    # 0.945; lr 0.2 gave 0.925 and CosFace (s = 32, m = 0.25) 0.936 after 600.
    c.face_id.update(scale=32.0, margin=0.3)
    c.batch_size = 64
    c.data.eval_batch_size = 128
    c.num_steps = 2_000
    c.log_every = 100
    c.eval_every = 500
    c.checkpoint_every = 500
    c.optim.update(lr=0.1, t0_steps=2_000, t_mult=1.0, warmup_steps=50)


def _smoke(c):
    """Seconds: a tiny set and network, for tests."""
    c.data.source = "synthetic"
    c.data.synthetic.update(identities=12, images=4, held_out=6, pairs=40, size=48, num_shards=2)
    c.data.augment.update(color_jitter=0.0)
    common.use_tower(c, common.SMOKE_TOWER, common.SMOKE_IMAGE_SIZE)
    c.batch_size = 8
    c.data.eval_batch_size = 16
    c.num_steps = 20
    c.log_every = 5
    c.eval_every = 20
    c.checkpoint_every = 10
    c.optim.update(lr=0.01, t0_steps=20, warmup_steps=0)
