"""Every numeric config key with a range, checked before any work starts (data rendering, compiling): one error line
naming the key, its value and what it must be."""

from collections.abc import Callable

from pasn_jax.models import towers


class ConfigError(ValueError):
    """A config value out of its range; the message names the key."""


_POSITIVE_INT = (lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 1, "an int >= 1")
_NONNEGATIVE_INT = (lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 0, "an int >= 0")
_POSITIVE = (lambda v: isinstance(v, (int, float)) and v > 0, "a number > 0")
_NONNEGATIVE = (lambda v: isinstance(v, (int, float)) and v >= 0, "a number >= 0")
_PROBABILITY = (lambda v: isinstance(v, (int, float)) and 0 <= v <= 1, "a number in [0, 1]")
_FRACTION_BELOW_ONE = (lambda v: isinstance(v, (int, float)) and 0 <= v < 1, "a number in [0, 1)")
_RANGE_IN_0_1 = (lambda v: len(v) == 2 and 0 < v[0] <= v[1] <= 1, "(lo, hi) with 0 < lo <= hi <= 1")
_POSITIVE_RANGE = (lambda v: len(v) == 2 and 0 < v[0] <= v[1], "(lo, hi) with 0 < lo <= hi")
_AT_LEAST_ONE = (lambda v: isinstance(v, (int, float)) and v >= 1, "a number >= 1")
_WORKERS = (lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= -1, "-1 (automatic) or an int >= 0")

RULES: dict[str, tuple[Callable, str]] = {
    "num_steps": _POSITIVE_INT, "batch_size": _POSITIVE_INT, "log_every": _POSITIVE_INT,
    "eval_every": _POSITIVE_INT, "checkpoint_every": _POSITIVE_INT, "keep_checkpoints": _POSITIVE_INT,
    "max_nonfinite_in_a_row": _POSITIVE_INT, "seed": _NONNEGATIVE_INT,
    "data.image_size": _POSITIVE_INT, "data.worker_count": _WORKERS, "data.eval_batch_size": _POSITIVE_INT,
    "data.augment.crop_scale": _RANGE_IN_0_1, "data.augment.crop_ratio": _POSITIVE_RANGE,
    "data.augment.color_jitter": _FRACTION_BELOW_ONE,
    "model.dropout": _FRACTION_BELOW_ONE, "model.identity_stats_batches": _NONNEGATIVE_INT,
    "loss.smoothing": _PROBABILITY, "loss.au": _NONNEGATIVE, "loss.expr": _NONNEGATIVE, "loss.va": _NONNEGATIVE,
    "optim.lr": _POSITIVE, "optim.momentum": _FRACTION_BELOW_ONE, "optim.weight_decay": _NONNEGATIVE,
    "optim.t0_steps": _POSITIVE_INT, "optim.t_mult": _AT_LEAST_ONE, "optim.eta_min": _NONNEGATIVE,
    "optim.warmup_steps": _NONNEGATIVE_INT,
    "face_id.scale": _POSITIVE, "face_id.margin": _NONNEGATIVE, "face_id.num_classes": _NONNEGATIVE_INT,
    "dln.projection_dim": _POSITIVE_INT,
}


def _get(config, key: str):
    value = config
    for part in key.split("."):
        if part not in value:
            return None
        value = value[part]
    return value


def check(config, device_count: int) -> None:
    """Raises ConfigError for the first key out of range; also that the global batches split over the devices and
    that the image size fits the backbone (towers.tower_fields)."""
    for key, (valid, expected) in RULES.items():
        value = _get(config, key)
        if value is None:
            continue
        try:
            ok = valid(tuple(value) if isinstance(value, (list, tuple)) else value)
        except TypeError:
            ok = False
        if not ok:
            raise ConfigError(f"config.{key}: expected {expected}, got {value!r}")
    for key in ("batch_size", "data.eval_batch_size"):
        if _get(config, key) % device_count:
            raise ConfigError(f"config.{key}: {_get(config, key)} does not split over {device_count} devices; use a "
                              f"multiple of {device_count}")
    margins = _get(config, "dln.margins")
    if margins is not None and (len(margins) != 3 or min(margins) < 0):
        raise ConfigError(f"config.dln.margins: expected 3 numbers >= 0 (one-, two-, three-class), got {margins!r}")
    try:
        towers.tower_fields(config.model)
    except towers.ModelConfigError as e:
        raise ConfigError("config.model." + str(e).removeprefix("model_config.")) from None
