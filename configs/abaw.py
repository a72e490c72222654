r"""PASN on Aff-Wild2 (ABAW2), the paper's recipe (§4.1), and its variants.

Train on converted Aff-Wild2 shards (see the README for the conversion), then evaluate:

  python -m pasn_jax.main --config=configs/abaw.py --workdir=runs/abaw --config.data.dir=/data/affwild2_shards
  python -m pasn_jax.main --config=configs/abaw.py --workdir=runs/abaw --config.data.dir=/data/affwild2_shards \
      --mode=eval

Variants, selected as `configs/abaw.py:VARIANT`:

  demo          the embedded default: renders the synthetic Aff-Wild2 into a cache folder on first use, converts
                it to shards, trains a small PASN on 2 CPU cores in minutes and evaluates it on unseen identities.
                  python -m pasn_jax.main --config=configs/abaw.py:demo --workdir=runs/demo
  folds         an ensemble member on the synthetic Aff-Wild2 (launch/folds.sh trains six): the demo's network with a
                random prior, 500 steps, and 16 test videos of people in no fold, which the ensemble is scored on.
                  launch/folds.sh runs/folds --config=configs/abaw.py:folds
  scarce_expr   the folds variant on a synthetic Aff-Wild2 whose EXPR labels are left on 20% of the training videos:
                the pseudo-label and external-data experiments (README, "External data and pseudo labels").
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

from configs import common

VARIANTS = ("demo", "smoke", "no_prior", "no_streaming", "random_prior", "folds", "scarce_expr")
DEMO_RUNS = "runs/demo"  # where `make demo` keeps its three stages' workdirs (face_id, dln, pasn)


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    variants = [v for v in (arg or "").split(",") if v]
    common.check_variants("configs/abaw.py", variants, VARIANTS)

    c = common.base_config("pasn")
    c.data.synthetic = ml_collections.ConfigDict(dict(
        cache_dir="~/.cache/pasn_jax", videos=64, frames=150, size=112, seed=0, num_shards=4, test_videos=0,
        expr_keep=1.0))  # expr_keep < 1: only that share of training videos keeps EXPR labels (pseudo labels)
    c.data.fold = -1  # -1: the original train/val split; 0..4: fold k of train + val (pasn_jax/data/folds.py)
    c.data.fold_seed = 0  # draws the order of equal-sized video groups when folds are dealt
    c.data.subjects = ""  # a CSV of video,subject: one person's videos stay in one fold
    # Mixed-source training (paper §3.4): "" = Aff-Wild2 alone; else WHERE=WEIGHT,... (pasn_jax/data/mixture.py)
    c.data.sources = ""
    c.data.external = ml_collections.ConfigDict(dict(  # the synthetic external sets (synthetic:<name>), their sizes
        affectnet=dict(images=2000, val_images=200, size=112, seed=0),
        bp4d=dict(subjects=8, tasks=4, frames=30, size=160, crop=112, seed=0),
        dfew=dict(clips=100, frames=16, size=112, seed=0, fold=1)))
    # --mode=predict: the frames of a cropped_aligned tree, without labels ("": the synthetic set's test videos)
    c.predict = ml_collections.ConfigDict(dict(root="", videos=""))
    c.model.prior = True
    c.model.streaming = True
    c.model.init_expr_from_id = True  # DLN: both towers start from the same face-recognition network
    c.model.identity_stats_batches = 8  # a random f_id: batch-norm statistics from 8 training batches
    c.model.weights = ml_collections.ConfigDict(dict(f_expr="", f_id=""))  # a workdir or PyTorch file per tower
    c.model.prior_from = ""  # a DLN workdir: both towers from it (configs/dln.py)
    c.loss = ml_collections.ConfigDict(dict(smoothing=0.9, au=1.0, expr=1.0, va=1.0))
    c.eval.split = "val"
    c.eval.images = 8  # frames of the Grad-CAM grid logged to TensorBoard with the confusion matrix at each evaluation

    if "no_prior" in variants:
        c.model.prior = False
        c.model.backbone = "resnet50"
    if "no_streaming" in variants:
        c.model.streaming = False
    if "demo" in variants or "folds" in variants or "scarce_expr" in variants:
        _demo(c, trained_prior="random_prior" not in variants and "folds" not in variants
              and "scarce_expr" not in variants)
    if "folds" in variants or "scarce_expr" in variants:
        _folds(c)
    if "scarce_expr" in variants:
        c.data.synthetic.expr_keep = 0.2
    if "smoke" in variants:
        _smoke(c)
    return c


def _demo(c, trained_prior: bool):
    """A small PASN on the synthetic Aff-Wild2: minutes on 2 CPU cores (README, "Demo results"); with the prior,
    its ResNet towers come from the demo's DLN stage (random_prior: the first wave's IResNet towers from a random
    f_id with measured statistics; no_prior: one ResNet tower)."""
    c.data.source = "synthetic"
    c.data.synthetic.update(videos=64, frames=150, size=112, seed=0, num_shards=4)  # 48 train, 16 val people
    c.data.augment.update(crop_scale=(0.85, 1.0), color_jitter=0.1)
    random_prior = c.model.prior and not trained_prior
    common.use_tower(c, common.DEMO_TOWER if random_prior else common.DEMO_RESNET_TOWER, common.DEMO_IMAGE_SIZE)
    if c.model.prior and trained_prior:
        c.model.prior_from = f"{DEMO_RUNS}/dln"
    c.batch_size = 32
    c.data.eval_batch_size = 128
    c.num_steps = 1_500
    c.log_every = 100
    c.eval_every = 500
    c.checkpoint_every = 500
    c.optim.update(lr=0.01, t0_steps=1_500, t_mult=1.0, warmup_steps=100)


def _folds(c):
    """An ensemble member: the demo's random-prior PASN trained for a third of its steps (six members take about as
    long as one demo), with held-out test people to score the ensemble on."""
    c.data.synthetic.test_videos = 16
    c.num_steps = 500
    c.eval_every = 500
    c.checkpoint_every = 250
    c.optim.update(t0_steps=500, warmup_steps=50)


def _smoke(c):
    """Seconds: a tiny synthetic set and network, for tests."""
    c.data.source = "synthetic"
    c.data.synthetic.update(videos=6, frames=12, size=48, seed=0, num_shards=2, test_videos=2)
    c.data.augment.update(color_jitter=0.0)
    common.use_tower(c, common.SMOKE_TOWER, common.SMOKE_IMAGE_SIZE)
    if not c.model.prior:
        c.model.backbone = "resnet50"
    c.batch_size = 8
    c.data.eval_batch_size = 16
    c.num_steps = 20
    c.log_every = 5
    c.eval_every = 20
    c.checkpoint_every = 10
    c.optim.update(lr=0.01, t0_steps=10, warmup_steps=0)
    c.eval.images = 0  # seconds count here: no pictures (tests/test_report.py turns them on)
