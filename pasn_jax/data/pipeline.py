"""grain input pipelines over the shards (ARCHITECTURE.md, "Data flow").

train: decode, random resized crop and resize on the host, which ships uint8 pixels with each image's horizontal
flip and colour-jitter factors drawn from the stream's random numbers; the devices apply them and normalise
(pasn_jax/data/device_augment.py; the stream that orders and batches the examples: pasn_jax/data/train_stream.py).
eval: every record of this process's share once, in stored (video, frame) order, padded to equal batch counts,
decoded, resized and normalised on the host.

A batch is a dict of numpy arrays: image [B,H,W,3] (train: uint8, with flip [B] bool and jitter [B,3] float32;
eval: float32 normalised as (x/255 - 0.5)/0.5); au [B,12] int32 (-1 kept), au_mask [B,12] float32; expr [B] int32
(-1 kept), expr_mask [B]; va [B,2] float32 (-5 kept), va_mask [B] (both annotated). Eval batches add video [B]
str, frame [B] int32 and valid [B] bool.
"""

import dataclasses
import math
from collections.abc import Mapping, Sequence

import grain
import numpy as np
import simplejpeg
from PIL import Image

from pasn_jax import labels
from pasn_jax.data import device_augment, shards

_CROP_ATTEMPTS = 10
# A record read is one pread + CRC check + parse: one reader thread overlaps it with decoding, while grain's
# default of 16 threads only contends for the GIL (measured on 2 cores at 112 px: 1,887 vs 1,436 img/s).
READ_OPTIONS = grain.ReadOptions(num_threads=1, prefetch_buffer_size=256)
AUGMENT_KEYS = ("random_resized_crop", "crop_scale", "crop_ratio", "hflip", "color_jitter")


@dataclasses.dataclass(frozen=True)
class Augment:
    random_resized_crop: bool
    crop_scale: tuple[float, float]  # area fraction of the source image
    crop_ratio: tuple[float, float]  # width / height
    hflip: bool
    color_jitter: float  # brightness, contrast and saturation factors drawn from [1 - s, 1 + s]; 0 = off


def augment_options(augment: Mapping) -> Augment:
    """The train augmentation from a mapping (dict or ml_collections ConfigDict) holding AUGMENT_KEYS."""
    missing = [k for k in AUGMENT_KEYS if k not in augment]
    if missing:
        raise ValueError(f"augment: missing key(s) {missing}; expected {list(AUGMENT_KEYS)}")
    options = Augment(random_resized_crop=bool(augment["random_resized_crop"]),
                      crop_scale=tuple(float(v) for v in augment["crop_scale"]),
                      crop_ratio=tuple(float(v) for v in augment["crop_ratio"]),
                      hflip=bool(augment["hflip"]), color_jitter=float(augment["color_jitter"]))
    lo, hi = options.crop_scale
    if not 0 < lo <= hi <= 1:
        raise ValueError(f"augment.crop_scale: expected 0 < lo <= hi <= 1, got {options.crop_scale}")
    lo, hi = options.crop_ratio
    if not 0 < lo <= hi:
        raise ValueError(f"augment.crop_ratio: expected 0 < lo <= hi, got {options.crop_ratio}")
    if not 0 <= options.color_jitter < 1:
        raise ValueError(f"augment.color_jitter: expected a strength in [0, 1), got {options.color_jitter}")
    return options


def label_arrays(record: Mapping) -> dict:
    """Labels of one frame record with their masks (1 where annotated; sentinels stay in the label arrays), and its
    identity (-1 where unknown)."""
    au = np.asarray(record["au"], np.int32)  # [12]
    va = np.asarray(record["va"], np.float32)  # [2]
    return {
        "au": au, "au_mask": (au != labels.AU_MISSING).astype(np.float32),
        "expr": np.int32(record["expr"]), "expr_mask": np.float32(record["expr"] != labels.EXPR_MISSING),
        "va": va, "va_mask": np.float32(np.all(va != labels.VA_MISSING)),
        "identity": np.int32(record.get("identity", shards.IDENTITY_UNKNOWN)),
    }


def _decode(data: bytes, where: str = "image") -> np.ndarray:
    """JPEG -> [h, w, 3] uint8; a record whose image does not decode is a ShardError naming it (`where`: the shard
    file and record number)."""
    try:
        return simplejpeg.decode_jpeg(data, colorspace="RGB")
    except ValueError as e:
        raise shards.ShardError(f"{where}: the image does not decode as a JPEG ({e})") from None


def _resize(image: np.ndarray, box: tuple[int, int, int, int], size: int) -> np.ndarray:
    """Crops box (x0, y0, x1, y1) and resizes it to size x size (bilinear, antialiased when shrinking)."""
    if box == (0, 0, image.shape[1], image.shape[0]) and image.shape[:2] == (size, size):
        return image
    return np.asarray(Image.fromarray(image).resize((size, size), Image.BILINEAR, box=box))


def _random_crop_box(rng: np.random.Generator, height: int, width: int, scale, ratio) -> tuple:
    """Random resized crop box: area fraction from `scale`, log-uniform aspect from `ratio`; centre crop if no
    draw fits."""
    area = height * width
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(_CROP_ATTEMPTS):
        target = area * rng.uniform(*scale)
        aspect = math.exp(rng.uniform(*log_ratio))
        w = int(round(math.sqrt(target * aspect)))
        h = int(round(math.sqrt(target / aspect)))
        if 0 < w <= width and 0 < h <= height:
            x0 = int(rng.integers(0, width - w + 1))
            y0 = int(rng.integers(0, height - h + 1))
            return x0, y0, x0 + w, y0 + h
    aspect = min(max(width / height, ratio[0]), ratio[1])
    w, h = (width, int(round(width / aspect))) if width / height < aspect else (int(round(height * aspect)), height)
    x0, y0 = (width - w) // 2, (height - h) // 2
    return x0, y0, x0 + w, y0 + h


def _normalise(image: np.ndarray) -> np.ndarray:
    """uint8 [H,W,3] -> float32 (x/255 - 0.5)/0.5."""
    x = image.astype(np.float32)
    x *= np.float32(1 / 127.5)
    x -= np.float32(1.0)
    return x


def augmented_image(data: bytes, rng: np.random.Generator, image_size: int, augment: Augment,
                    where: str = "image") -> dict:
    """A JPEG decoded, randomly cropped and resized: {'image': uint8 [S, S, 3], 'flip': bool, 'jitter': float32
    [3]}, the flip and the brightness, contrast and saturation factors drawn for the device to apply
    (device_augment.augment)."""
    image = _decode(data, where)
    height, width = image.shape[:2]
    a = augment
    box = (_random_crop_box(rng, height, width, a.crop_scale, a.crop_ratio) if a.random_resized_crop
           else (0, 0, width, height))
    flip = bool(a.hflip and rng.random() < 0.5)
    factors = rng.uniform(1 - a.color_jitter, 1 + a.color_jitter, 3) if a.color_jitter else (1.0, 1.0, 1.0)
    return {"image": np.ascontiguousarray(_resize(image, box, image_size)), "flip": np.bool_(flip),
            "jitter": np.asarray(factors, np.float32)}


def plain_pixels(image: np.ndarray, image_size: int) -> np.ndarray:
    """uint8 pixels [H, W, 3] resized whole and normalised, without augmentation. [S, S, 3]"""
    return _normalise(_resize(image, (0, 0, image.shape[1], image.shape[0]), image_size))


def plain_image(data: bytes, image_size: int, where: str = "image") -> np.ndarray:
    """A JPEG decoded, resized whole and normalised, without augmentation. [S, S, 3]"""
    return plain_pixels(_decode(data, where), image_size)


def missing_labels() -> dict:
    """The label arrays of a frame without any label (masks 0, identity unknown)."""
    return label_arrays({"au": [labels.AU_MISSING] * labels.NUM_AUS, "expr": labels.EXPR_MISSING,
                         "va": [labels.VA_MISSING] * len(labels.VA_NAMES)})


class TrainTransform(grain.transforms.RandomMap):
    """frame record -> train example: uint8 pixels decoded, randomly cropped and resized, with the flip and colour
    jitter the device applies (`augmented_image`). `bad` is 0; with `skip_bad`, a record whose image does not
    decode becomes a mid-grey example without labels (`bad` 1: it adds nothing to any loss) instead of stopping
    training."""

    def __init__(self, image_size: int, augment: Augment, skip_bad: bool = False):
        self.image_size, self.augment, self.skip_bad = image_size, augment, skip_bad

    def random_map(self, record: Mapping, rng: np.random.Generator) -> dict:
        try:
            example = augmented_image(record["image"], rng, self.image_size, self.augment,
                                      record.get("where", "image"))
        except shards.ShardError:
            if not self.skip_bad:
                raise
            return {**blank_images((), self.image_size), **missing_labels(), "bad": np.int32(1)}
        return {**example, **label_arrays(record), "bad": np.int32(0)}


def blank_images(shape: tuple[int, ...], image_size: int) -> dict:
    """Mid-grey uint8 train images of leading shape `shape`, left as they are (an unreadable record's stand-in)."""
    return {"image": np.full(shape + (image_size, image_size, 3), 128, np.uint8),
            **device_augment.no_augmentation(shape)}


class EvalTransform(grain.transforms.Map):
    """frame record -> example without augmentation, with its video and frame."""

    def __init__(self, image_size: int):
        self.image_size = image_size

    def map(self, record: Mapping) -> dict:
        return {"image": plain_image(record["image"], self.image_size, record.get("where", "image")),
                **label_arrays(record), "video": record["video"], "frame": np.int32(record["frame"]), "valid": True}


class ImageTransform(grain.transforms.Map):
    """{'image': JPEG bytes, 'index': int} -> example without augmentation (sets of bare images)."""

    def __init__(self, image_size: int):
        self.image_size = image_size

    def map(self, record: Mapping) -> dict:
        return {"image": plain_image(record["image"], self.image_size), "index": np.int32(record["index"]),
                "valid": True}


def _shard_options(shard_index: int | None, shard_count: int | None) -> grain.sharding.ShardOptions:
    if shard_index is None and shard_count is None:
        return grain.sharding.ShardByJaxProcess(drop_remainder=False)
    if shard_index is None or shard_count is None:
        raise ValueError(f"shard_index and shard_count go together, got {shard_index} and {shard_count}")
    return grain.sharding.ShardOptions(shard_index=shard_index, shard_count=shard_count, drop_remainder=False)


def _frame_padding(image_size: int) -> dict:
    """One padding example of frames: sentinel labels, zero masks, valid False."""
    return {"image": np.zeros((image_size, image_size, 3), np.float32), **missing_labels(), "video": "",
            "frame": np.int32(0), "valid": False}


def stack(examples: list[dict]) -> dict:
    """Examples -> a batch: each field stacked (string fields as a str array)."""
    return {k: np.stack([e[k] for e in examples]) if k != "video" else np.array([e[k] for e in examples], str)
            for k in examples[0]}


class EvalBatches:
    """Eval batches of one process: its share [start, stop) of a random-access source, `transform`ed, in order,
    the last padded with `padding` (an example whose `valid` is False), and as many padding batches after as make
    `num_batches` (every process yields the same number)."""

    def __init__(self, source, start: int, stop: int, transform: grain.transforms.Map, padding: dict, *,
                 batch_size: int, num_batches: int):
        self.source, self.start, self.stop, self.transform, self.padding = source, start, stop, transform, padding
        self.batch_size, self.num_batches = batch_size, num_batches

    def __len__(self) -> int:
        return self.num_batches

    def __iter__(self):
        dataset = grain.MapDataset.source(self.source)[self.start:self.stop].map(self.transform)
        pending, produced = [], 0
        for example in dataset.to_iter_dataset(READ_OPTIONS):
            pending.append(example)
            if len(pending) == self.batch_size:
                yield stack(pending)
                pending, produced = [], produced + 1
        if pending:
            yield stack(pending + [self.padding] * (self.batch_size - len(pending)))
            produced += 1
        for _ in range(self.num_batches - produced):
            yield stack([self.padding] * self.batch_size)


def process_share(source, transform: grain.transforms.Map, padding: dict, *, batch_size: int,
                  shard_index: int | None, shard_count: int | None) -> EvalBatches:
    """Every record of this process's contiguous share of `source` once, in order; every process yields
    ceil(ceil(N / shard_count) / batch_size) batches."""
    options = _shard_options(shard_index, shard_count)
    share = -(-len(source) // options.shard_count)
    start = min(len(source), options.shard_index * share)
    stop = min(len(source), start + share)
    return EvalBatches(source, start, stop, transform, padding, batch_size=batch_size,
                       num_batches=-(-share // batch_size))


def eval_dataset(data_dir: str, *, batch_size: int, image_size: int, split: str = "val",
                 shard_index: int | None = None, shard_count: int | None = None, source=None) -> EvalBatches:
    """Every frame record of this process's share of a split (or of `source`, e.g. a fold's videos) once, in order,
    no augmentation; the last batch padded (`valid` marks real records)."""
    source = shards.ShardSource(data_dir, split) if source is None else source
    return process_share(source, EvalTransform(image_size), _frame_padding(image_size),
                         batch_size=batch_size, shard_index=shard_index, shard_count=shard_count)


def image_batches(images: Sequence[bytes], *, batch_size: int, image_size: int, shard_index: int | None = None,
                  shard_count: int | None = None) -> EvalBatches:
    """Batches {'image', 'index', 'valid'} of this process's share of a list of encoded images (e.g. a verification
    set), in order, without augmentation."""
    source = [{"image": data, "index": i} for i, data in enumerate(images)]
    padding = {"image": np.zeros((image_size, image_size, 3), np.float32), "index": np.int32(-1), "valid": False}
    return process_share(source, ImageTransform(image_size), padding, batch_size=batch_size, shard_index=shard_index,
                         shard_count=shard_count)


def spread_examples(source, image_size: int, count: int) -> list[dict]:
    """`count` evaluation examples spread evenly over a source of frame records (pictures of a split)."""
    transform = EvalTransform(image_size)
    return [transform.map(source[int(i)]) for i in np.linspace(0, len(source) - 1, min(count, len(source))).round()]


def num_records(data_dir: str, split: str) -> int:
    return int(shards.read_metadata(data_dir, split)["num_records"])
