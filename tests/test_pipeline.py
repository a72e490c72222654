"""grain pipelines: eval returns exactly the text files' labels; the train stream is deterministic, starts at any
batch, is sharded by process and the same for any number of processes and input workers; augmentation and
normalisation against direct references."""

import math

import ml_collections
import numpy as np
import pytest
import simplejpeg

from conftest import TINY_TREE
from pasn_jax.data import affwild2, device_augment, pipeline, shards, train_stream

SIZE = TINY_TREE["size"]
NO_AUGMENT = dict(random_resized_crop=False, crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0), hflip=False,
                  color_jitter=0.0)
AUGMENT = dict(random_resized_crop=True, crop_scale=(0.6, 1.0), crop_ratio=(0.8, 1.25), hflip=True,
               color_jitter=0.3)
TRAIN_KEYS = {"image", "flip", "jitter", "au", "au_mask", "expr", "expr_mask", "va", "va_mask", "identity", "bad"}


def _normalised_jpeg(data: bytes) -> np.ndarray:
    return (simplejpeg.decode_jpeg(data, colorspace="RGB").astype(np.float32) / 255 - 0.5) / 0.5


def _on_device(batch: dict) -> np.ndarray:
    """A train batch's images as the step sees them (device_augment)."""
    return np.asarray(device_augment.prepare(batch)["image"])


def _check_masks(batch):
    np.testing.assert_array_equal(batch["au_mask"], np.float32(batch["au"] != -1))
    np.testing.assert_array_equal(batch["expr_mask"], np.float32(batch["expr"] != -1))
    np.testing.assert_array_equal(batch["va_mask"], np.float32((batch["va"] != -5).all(1)))


def test_eval_returns_exactly_the_labels_of_the_text_files(synthetic_tree, synthetic_shards, expected_labels):
    for split in affwild2.SPLIT_SETS:
        batches = list(pipeline.eval_dataset(synthetic_shards, batch_size=5, image_size=SIZE, split=split,
                                             shard_index=0, shard_count=1))
        got, order = {}, []
        for b in batches:
            assert b["image"].shape == (5, SIZE, SIZE, 3) and b["image"].dtype == np.float32
            assert (b["au"].dtype, b["expr"].dtype, b["va"].dtype, b["frame"].dtype) == (np.int32,) * 2 + (
                np.float32, np.int32)
            _check_masks(b)
            for i in np.flatnonzero(b["valid"]):
                key = (str(b["video"][i]), int(b["frame"][i]))
                order.append(key)
                got[key] = (tuple(int(v) for v in b["au"][i]), int(b["expr"][i]), tuple(b["va"][i]))
                with open(f"{synthetic_tree}/cropped_aligned/{key[0]}/{key[1]:05d}.jpg", "rb") as f:
                    np.testing.assert_allclose(b["image"][i], _normalised_jpeg(f.read()), atol=1e-6)
        expected = expected_labels[split]
        assert order == sorted(expected)  # every frame with an image once, in (video, frame) order
        assert got.keys() == expected.keys()  # image-less frames skipped, and only they
        for key, (au, expr, va) in expected.items():
            assert got[key][:2] == (au, expr)
            np.testing.assert_array_equal(got[key][2], np.float32(va))


def test_eval_processes_share_the_split_with_equal_batch_counts(synthetic_shards):
    n = pipeline.num_records(synthetic_shards, "train")
    whole = [(str(v), int(f)) for b in pipeline.eval_dataset(synthetic_shards, batch_size=4, image_size=16,
                                                               split="train", shard_index=0, shard_count=1)
             for v, f, ok in zip(b["video"], b["frame"], b["valid"]) if ok]
    assert len(whole) == n
    seen = []
    for p in range(5):
        batches = pipeline.eval_dataset(synthetic_shards, batch_size=4, image_size=16, split="train", shard_index=p,
                                        shard_count=5)
        assert len(batches) == math.ceil(math.ceil(n / 5) / 4)
        listed = list(batches)
        assert len(listed) == len(batches)
        for b in listed:
            seen += [(str(v), int(f)) for v, f, ok in zip(b["video"], b["frame"], b["valid"]) if ok]
            pad = ~b["valid"]
            assert (b["video"][pad] == "").all() and (b["frame"][pad] == 0).all()
            for mask in ("au_mask", "expr_mask", "va_mask"):
                assert (b[mask][pad] == 0).all()
    assert seen == whole


def _batches(iterator, count):
    return [next(iterator) for _ in range(count)]


def _assert_same(a, b):
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def test_train_is_deterministic_for_a_seed_and_differs_across_seeds(synthetic_shards):
    make = lambda seed: train_stream.train_dataset(synthetic_shards, batch_size=6, image_size=32, seed=seed,
                                               augment=AUGMENT, shard_index=0, shard_count=1)
    first, again, other = _batches(make(0), 3), _batches(make(0), 3), _batches(make(1), 3)
    for a, b in zip(first, again):
        _assert_same(a, b)
    assert first[0].keys() == TRAIN_KEYS
    assert first[0]["image"].shape == (6, 32, 32, 3) and first[0]["image"].dtype == np.uint8
    assert first[0]["flip"].shape == (6,) and first[0]["jitter"].shape == (6, 3)
    assert first[0]["au"].shape == (6, 12) and first[0]["va"].shape == (6, 2) and first[0]["expr"].shape == (6,)
    for b in first:
        _check_masks(b)
    assert not np.array_equal(first[0]["image"], other[0]["image"])
    assert any(not np.array_equal(a["va"], b["va"]) for a, b in zip(first, other))


def test_train_repeats_past_the_end_of_the_split(synthetic_shards):
    n = pipeline.num_records(synthetic_shards, "val")
    iterator = train_stream.train_dataset(synthetic_shards, batch_size=7, image_size=16, seed=0, augment=NO_AUGMENT,
                                      split="val", shard_index=0, shard_count=1)
    assert len(_batches(iterator, 2 * n // 7 + 1)) == 2 * n // 7 + 1


def test_train_started_at_a_batch_continues_the_same_stream(synthetic_shards):
    """The stream's position is the step: starting at batch 3 gives batches 3, 4, ... of a stream read from 0."""
    make = lambda start: train_stream.train_dataset(synthetic_shards, batch_size=4, image_size=24, seed=3,
                                                    augment=AUGMENT, start=start)
    from_zero = _batches(make(0), 6)
    for a, b in zip(from_zero[3:], _batches(make(3), 3)):
        _assert_same(a, b)


def test_two_processes_get_disjoint_shares_that_cover_the_split(synthetic_shards):
    n = pipeline.num_records(synthetic_shards, "train")
    source = shards.ShardSource(synthetic_shards, "train")
    shares = []
    for p in range(2):
        # process p holds stream positions p, p + 2, ...; over the first epoch (positions < n) the two processes'
        # records are disjoint and cover the split
        stream = train_stream.TrainBatches(source, None, seed=0, global_batch=8, shard_index=p, shard_count=2)
        keys = [stream.record_key(position) for position in range(p, n, 2)]
        assert len(set(keys)) == len(keys)
        shares.append(set(keys))
        assert stream.positions(0).tolist() == list(range(p, 8, 2))
        iterator = train_stream.train_dataset(synthetic_shards, batch_size=4, image_size=SIZE, seed=0,
                                              augment=NO_AUGMENT, shard_index=p, shard_count=2)
        batch = next(iterator)
        for i, key in enumerate(keys[:4]):
            record = source[key]
            np.testing.assert_array_equal(batch["image"][i], simplejpeg.decode_jpeg(record["image"],
                                                                                    colorspace="RGB"))
            np.testing.assert_allclose(_on_device(batch)[i], _normalised_jpeg(record["image"]), atol=1e-6)
            np.testing.assert_array_equal(batch["au"][i], record["au"])
            assert batch["expr"][i] == record["expr"]
            np.testing.assert_array_equal(batch["va"][i], record["va"])
    assert not shares[0] & shares[1]
    assert shares[0] | shares[1] == set(range(n))


def test_global_batch_does_not_depend_on_the_process_count(synthetic_shards):
    """Two processes' batches of 4 hold the same augmented examples as one process's batch of 8."""
    make = lambda batch_size, p, count: train_stream.train_dataset(
        synthetic_shards, batch_size=batch_size, image_size=SIZE, seed=5, augment=AUGMENT, shard_index=p,
        shard_count=count)
    whole = _batches(make(8, 0, 1), 3)
    halves = [_batches(make(4, p, 2), 3) for p in range(2)]
    for step, batch in enumerate(whole):
        # Process p holds global positions p, p + 2, ...: interleave the halves back into stream order.
        merged = {k: np.stack([halves[i % 2][step][k][i // 2] for i in range(8)]) for k in batch}
        for k in batch:
            np.testing.assert_array_equal(merged[k], batch[k], err_msg=k)


def test_augmentation_changes_pixels_but_not_labels(synthetic_shards):
    plain = _batches(train_stream.train_dataset(synthetic_shards, batch_size=8, image_size=32, seed=4,
                                            augment=NO_AUGMENT, shard_index=0, shard_count=1), 2)
    augmented = _batches(train_stream.train_dataset(synthetic_shards, batch_size=8, image_size=32, seed=4,
                                                augment=AUGMENT, shard_index=0, shard_count=1), 2)
    for a, b in zip(plain, augmented):
        for k in TRAIN_KEYS - {"image", "flip", "jitter"}:
            np.testing.assert_array_equal(a[k], b[k])
        assert not a["flip"].any() and (a["jitter"] == 1).all()
        assert 0 < b["flip"].sum() < 8 and ((0.7 <= b["jitter"]) & (b["jitter"] <= 1.3)).all()
        a_image, b_image = _on_device(a), _on_device(b)
        assert np.abs(a_image - b_image).mean() > 0.02
        assert -1 <= b_image.min() and b_image.max() <= 1


def test_device_flip_and_colour_jitter_match_sequential_brightness_contrast_saturation():
    """device_augment against the three adjustments applied one after another in float64, per image of a batch
    [2, 3] of images (a triplet batch's layout), mirrored where asked; plain normalisation where left alone."""
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (2, 3, 9, 7, 3)).astype(np.uint8)
    flip = np.array([[True, False, False], [False, True, False]])
    jitter = np.array([[[1.1, 0.8, 1.3], [0.9, 1.2, 0.7], [1.0, 1.0, 1.0]],
                       [[0.75, 1.25, 1.0], [1.2, 0.9, 1.25], [1.0, 1.0, 1.0]]], np.float32)
    grey = lambda x: x @ np.array([0.299, 0.587, 0.114])
    got = np.asarray(device_augment.augment(images, flip, jitter))
    for index in np.ndindex(flip.shape):
        x = images[index].astype(np.float64)[:, ::-1] if flip[index] else images[index].astype(np.float64)
        b, c, s = jitter[index].astype(np.float64)
        x = x * b
        x = c * x + (1 - c) * grey(x).mean()
        x = s * x + (1 - s) * grey(x)[..., None]
        expected = (np.clip(x, 0, 255) / 255 - 0.5) / 0.5
        np.testing.assert_allclose(got[index], expected, atol=2e-6, err_msg=str(index))
    np.testing.assert_allclose(got[0, 2], (images[0, 2] / 255 - 0.5) / 0.5, atol=1e-6)


def test_random_crop_boxes_respect_scale_and_ratio():
    rng = np.random.default_rng(0)
    for _ in range(200):
        x0, y0, x1, y1 = pipeline._random_crop_box(rng, 112, 100, (0.3, 0.9), (0.75, 1.333))
        assert 0 <= x0 < x1 <= 100 and 0 <= y0 < y1 <= 112
        w, h = x1 - x0, y1 - y0
        assert 0.3 * 11200 * 0.95 <= w * h <= 0.9 * 11200 * 1.05
        assert 0.75 * 0.95 <= w / h <= 1.333 * 1.05
    assert pipeline._random_crop_box(rng, 50, 100, (1.0, 1.0), (1.0, 1.0)) == (25, 0, 75, 50)  # nothing fits


def test_augment_reads_a_config_dict():
    options = pipeline.augment_options(ml_collections.ConfigDict(AUGMENT))
    assert options == pipeline.Augment(random_resized_crop=True, crop_scale=(0.6, 1.0), crop_ratio=(0.8, 1.25),
                                       hflip=True, color_jitter=0.3)


def test_bad_augment_and_sharding_arguments(synthetic_shards):
    with pytest.raises(ValueError, match=r"augment: missing key\(s\) \['hflip'\]"):
        pipeline.augment_options({k: v for k, v in AUGMENT.items() if k != "hflip"})
    with pytest.raises(ValueError, match="augment.crop_scale"):
        pipeline.augment_options({**AUGMENT, "crop_scale": (0.5, 1.5)})
    with pytest.raises(ValueError, match="shard_index and shard_count go together"):
        pipeline.eval_dataset(synthetic_shards, batch_size=2, image_size=16, shard_index=0)


def test_input_workers_give_the_same_batches_bit_for_bit(synthetic_shards):
    make = lambda workers: train_stream.train_dataset(synthetic_shards, batch_size=4, image_size=16, seed=2,
                                                      augment=AUGMENT, worker_count=workers, start=1)
    reference = _batches(make(0), 4)
    for workers in (1, 2):
        for a, b in zip(reference, _batches(make(workers), 4)):
            _assert_same(a, b)
