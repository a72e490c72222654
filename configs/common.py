"""What every training config holds: the keys of the one training loop (pasn_jax/train.py) with the paper's values
(§4.1), the tower fields (shared by PASN and the two stages of its prior, so that towers move between their
workdirs), and the demo's and the smoke tests' small towers."""

import ml_collections

# The demo's towers and the smoke tests' tiny ones. DEMO_TOWER (IResNet) is the random prior's two towers (the first
# wave's demo, kept by the random_prior, folds and scarce_expr variants); DEMO_RESNET_TOWER, the same width and depth
# as a ResNet, is no_prior's single tower and the trained prior's: its three stages (identity, DLN, PASN) share it,
# so that a stage's tower fits the next stage's model. On 2 CPU cores it trains 2.6x faster than the IResNet (whose
# first block runs at full resolution) and its global pooling takes any image size: face identity trains at half
# PASN's size, as the paper's 112-px face-recognition tower feeds its 224-px PASN, DLN and PASN at PASN's
# (README, "Demo results").
DEMO_TOWER = dict(backbone="iresnet18", width=16, layers=(1, 1, 1, 1), embedding_dim=512)
DEMO_RESNET_TOWER = {**DEMO_TOWER, "backbone": "resnet50"}
DEMO_IMAGE_SIZE = 64  # PASN (stage 3) and its variants, DLN (stage 2)
DEMO_FACE_ID_IMAGE_SIZE = 32  # the prior's stage 1 (face identity)
SMOKE_TOWER = dict(backbone="iresnet18", width=8, layers=(1, 1, 1, 1), embedding_dim=32)
SMOKE_IMAGE_SIZE = 32


def base_config(task: str) -> ml_collections.ConfigDict:
    """The loop's keys, the data and model keys every task reads, the optimizer and the evaluation keys."""
    c = ml_collections.ConfigDict()
    c.task = task  # the training task (pasn_jax/tasks)
    c.seed = 0
    c.batch_size = 80  # global, over all devices and processes (paper §4.1)
    c.num_steps = 100_000
    c.log_every = 100
    c.eval_every = 5_000
    c.checkpoint_every = 1_000
    c.keep_checkpoints = 3
    c.max_nonfinite_in_a_row = 20  # consecutive non-finite losses/gradients that stop the run
    c.init_from = ""  # a workdir: every parameter starts from its latest checkpoint (fine-tuning; fresh optimizer)

    c.data = ml_collections.ConfigDict()
    c.data.dir = ""  # converted shards (python -m pasn_jax.data.convert ...)
    c.data.source = "shards"  # "shards": read data.dir; "synthetic": render + convert into data.synthetic.cache_dir
    c.data.image_size = 224
    c.data.worker_count = -1  # input worker processes; -1: automatic (none on a CPU, cores - 1 on GPU/TPU hosts)
    c.data.eval_batch_size = 80  # global
    c.data.skip_bad_records = False  # a training record whose image does not decode: stop (False) or skip, counted
    c.data.augment = ml_collections.ConfigDict(dict(
        random_resized_crop=True, crop_scale=(0.8, 1.0), crop_ratio=(0.9, 1.1), hflip=True, color_jitter=0.2))

    c.model = ml_collections.ConfigDict()
    c.model.backbone = "iresnet50"
    c.model.width = 64
    c.model.layers = None  # None: the named depth; e.g. (1, 1, 1, 1) for a tiny network
    c.model.embedding_dim = 512
    c.model.image_size = c.data.get_ref("image_size")
    c.model.dropout = 0.0
    c.model.dtype = "auto"  # bfloat16 on GPU/TPU, float32 on CPU; the workdir records the one used
    c.model.kernels = "auto"  # the towers' layers: "cpu" (XLA:CPU's rewrites) on a CPU, else "portable" (plain lax)

    c.optim = ml_collections.ConfigDict(dict(
        name="sgd", lr=0.002, momentum=0.9, nesterov=False, weight_decay=5e-4,
        t0_steps=10_000, t_mult=2.0, eta_min=0.0, warmup_steps=0))
    c.eval = ml_collections.ConfigDict(dict(step=-1))  # step -1: the latest checkpoint
    return c


def use_tower(c: ml_collections.ConfigDict, tower: dict, image_size: int) -> None:
    """Sets the tower fields and the image size (data and model)."""
    c.data.image_size = image_size
    c.model.update(tower)


def check_variants(name: str, variants: list[str], known: tuple[str, ...]) -> None:
    for v in variants:
        if v not in known:
            raise ValueError(f"{name}: unknown variant {v!r}; expected one of {', '.join(known)}")
