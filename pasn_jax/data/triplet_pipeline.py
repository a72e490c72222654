"""grain pipelines over triplet shards (expression-similarity triplets, the data of DLN, paper §3.2).

A batch: image [B, 3, S, S, 3] (faces 0 and 1 the most similar pair, face 2 the odd one out), triplet_type [B]
int32 (1, 2 or 3 classes); eval batches add valid [B] bool. As in the frame pipeline, train images are uint8 with
flip [B, 3] and jitter [B, 3, 3] (each face augmented on its own; the devices apply them), eval images float32
normalised on the host.
"""

from collections.abc import Mapping

import grain
import numpy as np

from pasn_jax.data import pipeline, shards, train_stream


class TripletTrainTransform(grain.transforms.RandomMap):
    """triplet record -> its three faces, each augmented on its own; `bad` as pipeline.TrainTransform's (a bad
    triplet is masked out of the loss)."""

    def __init__(self, image_size: int, augment: pipeline.Augment, skip_bad: bool = False):
        self.image_size, self.augment, self.skip_bad = image_size, augment, skip_bad

    def random_map(self, record: Mapping, rng: np.random.Generator) -> dict:
        where = record.get("where", "triplet")
        try:
            faces = pipeline.stack([pipeline.augmented_image(data, rng, self.image_size, self.augment, where)
                                    for data in record["images"]])
        except shards.ShardError:
            if not self.skip_bad:
                raise
            return {**pipeline.blank_images((3,), self.image_size), "triplet_type": np.int32(1), "bad": np.int32(1)}
        return {**faces, "triplet_type": np.int32(record["triplet_type"]), "bad": np.int32(0)}


class TripletEvalTransform(grain.transforms.Map):
    """triplet record -> its three faces without augmentation."""

    def __init__(self, image_size: int):
        self.image_size = image_size

    def map(self, record: Mapping) -> dict:
        faces = [pipeline.plain_image(data, self.image_size, record.get("where", "triplet"))
                 for data in record["images"]]
        return {"image": np.stack(faces), "triplet_type": np.int32(record["triplet_type"]), "valid": True}


def train_triplets(data_dir: str, *, batch_size: int, image_size: int, seed: int, augment: Mapping,
                   split: str = "train", start: int = 0, worker_count: int = 0, shard_index: int = 0,
                   shard_count: int = 1, skip_bad: bool = False):
    """Endless augmented triplet batches of `batch_size` triplets (per process) from batch `start` (train_stream)."""
    transform = TripletTrainTransform(image_size, pipeline.augment_options(augment), skip_bad)
    return train_stream.train_stream(shards.ShardSource(data_dir, split), transform, batch_size=batch_size, seed=seed,
                                     start=start, worker_count=worker_count, shard_index=shard_index,
                                     shard_count=shard_count)


def eval_triplets(data_dir: str, *, batch_size: int, image_size: int, split: str = "test",
                  shard_index: int | None = None, shard_count: int | None = None) -> pipeline.EvalBatches:
    """Every triplet of this process's share of a split once, in order, without augmentation."""
    padding = {"image": np.zeros((3, image_size, image_size, 3), np.float32), "triplet_type": np.int32(1),
               "valid": False}
    return pipeline.process_share(shards.ShardSource(data_dir, split), TripletEvalTransform(image_size), padding,
                                  batch_size=batch_size, shard_index=shard_index, shard_count=shard_count)
