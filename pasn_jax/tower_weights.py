"""Where a network's towers start from (paper §3.2: f_id is a trained face-recognition network, f_expr DLN's trained
expression tower): PyTorch `state_dict` files (insightface IResNet, torchvision ResNet-50) or the checkpoints of
this project's own trainings, a workdir of the face-identity stage (its tower), of the DLN stage (its f_expr and
f_id, a pair) or of PASN.

The tower config of a workdir (backbone, width, layers, embedding size) must be the model's; a different image
size is adapted as the PyTorch import does (IResNet's fc resized; a ResNet, which pools globally, taken as it is),
announced in one line.
"""

import os
from collections.abc import Callable, Iterator, Mapping

import jax
import numpy as np

from pasn_jax import checkpointing, parallel, workdir_config
from pasn_jax.data import device_augment
from pasn_jax.train_state import init_variables
from pasn_jax.models import initialise, torch_import, towers

_TOWER_KEYS = ("backbone", "width", "layers", "embedding_dim")


class TowerSourceError(ValueError):
    """A tower source (file or workdir) that does not fit the model; the message names both sides."""


def _describe(fields: Mapping) -> str:
    return ", ".join(f"{k} {fields[k]!r}" for k in _TOWER_KEYS)


def _workdir_tower_name(config: Mapping, tower: str, workdir: str) -> str:
    """Which tower of a workdir's checkpoint serves the tower asked for: a face-identity network has one (its
    'backbone', the identity tower) whatever is asked; DLN and PASN (with prior) hold f_expr and f_id."""
    if config.get("task") == "face_id":
        return "backbone"
    if tower == "backbone" and config.get("task") == "dln":
        raise TowerSourceError(f"{workdir}: a DLN workdir holds f_expr and f_id, not a single backbone")
    return tower


def _resize_fc(kernel: np.ndarray, channels: int, in_features: int, where: str) -> np.ndarray:
    """An IResNet fc kernel [C * g * g, E] (NCHW flatten order) for the grid G = r * g of another image size:
    nearest repetition of the spatial kernel, divided by r^2 (the output on an r-times nearest-upsampled map is
    unchanged)."""
    g, grid = (round(np.sqrt(n / channels)) for n in (kernel.shape[0], in_features))
    if channels * g * g != kernel.shape[0] or channels * grid * grid != in_features or grid % g:
        raise TowerSourceError(f"{where}: its fc reads {kernel.shape[0]} features, the model's {in_features}: the "
                               f"image sizes are not integer multiples of each other")
    r = grid // g
    print(f"{where}: fc resized from {channels}x{g}x{g} to {channels}x{grid}x{grid} inputs (nearest, divided by "
          f"{r * r}): trained at {16 * g} px, this model runs at {16 * grid} px", flush=True)
    spatial = kernel.reshape(channels, g, g, -1).repeat(r, axis=1).repeat(r, axis=2)
    return spatial.reshape(in_features, -1) / (r * r)


def workdir_tower(workdir: str, tower: str, current: Mapping, model_fields: Mapping) -> dict:
    """Tower `tower` ('f_expr', 'f_id', 'backbone') of a workdir's latest checkpoint, fitted to `current` (the
    model's tower variables) whose tower fields are `model_fields`."""
    config = workdir_config.read(workdir)
    theirs = {k: tuple(v) if isinstance(v, list) else v for k, v in config["model"].items()}
    ours = {k: tuple(v) if isinstance(v, (list, tuple)) else v for k, v in model_fields.items()}
    if theirs["layers"] is None:
        theirs["layers"] = towers.DEFAULT_LAYERS[theirs["backbone"]]
    if any(theirs[k] != ours[k] for k in _TOWER_KEYS):
        raise TowerSourceError(f"{workdir}: its towers are {_describe(theirs)}; this model's are {_describe(ours)}")
    name = _workdir_tower_name(config, tower, workdir)
    variables, step = checkpointing.read_variables(workdir)
    try:
        found = towers.get_tower(variables, name)
    except towers.ModelConfigError:
        raise TowerSourceError(f"{workdir}: its checkpoint has no {name!r} tower") from None
    where = f"{workdir} (step {step}, tower {name})"
    fc, ours_fc = found["params"]["fc"]["kernel"], current["params"]["fc"]["kernel"]
    if fc.shape != ours_fc.shape and ours["backbone"].startswith("iresnet"):
        channels = current["params"]["bn2"]["scale"].shape[0]
        found["params"] = {**found["params"], "fc": {**found["params"]["fc"],
                                                     "kernel": _resize_fc(fc, channels, ours_fc.shape[0], where)}}
    elif theirs.get("image_size") != ours.get("image_size"):
        print(f"{where}: trained at {theirs.get('image_size')} px, used at {ours.get('image_size')} px "
              f"({ours['backbone']} pools globally: no weight changes)", flush=True)
    print(f"{where}: loaded into tower {tower!r}", flush=True)
    return found


def load_tower(source: str, tower: str, current: Mapping, model_fields: Mapping) -> dict:
    """Tower variables for `tower` from `source`: a workdir (a folder with config.json) or a PyTorch file."""
    if os.path.isdir(source):
        return workdir_tower(source, tower, current, model_fields)
    if not os.path.isfile(source):
        raise FileNotFoundError(f"{source}: no such weight file or workdir")
    variables = torch_import.tower_from_torch(torch_import.load_state_dict(source), current,
                                              model_fields["backbone"], source=source)
    print(f"{source}: loaded {sum(np.size(x) for x in jax.tree.leaves(variables)):,} values into tower {tower!r} "
          f"({model_fields['backbone']})", flush=True)
    return variables


def tower_sources(prior: bool, prior_from: str, weights: Mapping) -> dict[str, str]:
    """{tower: source} from a model config: `prior_from` (a DLN workdir) gives f_expr and f_id together (they stay
    a pair); `weights.f_id` / `weights.f_expr` name one tower each (without prior, `weights.f_expr` names the single
    backbone)."""
    if not prior:
        if prior_from:
            raise TowerSourceError(f"model.prior_from: {prior_from!r} is set but model.prior is False")
        return {"backbone": weights["f_expr"]} if weights["f_expr"] else {}
    if prior_from:
        named = [k for k in ("f_id", "f_expr") if weights[k]]
        if named:
            raise TowerSourceError(f"model.prior_from ({prior_from}) and model.weights.{named[0]} "
                                   f"({weights[named[0]]}) both name tower {named[0]}; set one of them")
        return {"f_expr": prior_from, "f_id": prior_from}
    return {k: weights[k] for k in ("f_id", "f_expr") if weights[k]}


def trained_towers(model, config) -> dict:
    """{tower: variables} of the towers of `model` (a network with the prior's towers, or one backbone) that start
    from trained weights named by the config: `model.prior_from` (a DLN workdir: f_expr and f_id together),
    `model.weights.f_id` / `f_expr` (a workdir or a PyTorch file each)."""
    variables = jax.eval_shape(lambda: init_variables(model, config.model.image_size, jax.random.key(0)))
    fields = towers.tower_fields(config.model)
    sources = tower_sources(getattr(model, "prior", True), config.model.get("prior_from", ""), config.model.weights)
    return {tower: load_tower(source, tower, towers.get_tower(variables, tower), fields)
            for tower, source in sources.items()}


def initial_prior_variables(model, config, rng, mesh, identity_batches: Callable[[], Iterator[dict]],
                            images: Callable = lambda x: x) -> tuple[dict, int]:
    """(variables, images measured) of a network with the prior's towers (PASN, DLN) at its first step: random
    variables, then `initialise.initial_variables` with the trained towers of the config and, for a random f_id,
    its batch-norm statistics measured on `model.identity_stats_batches` global batches of `identity_batches()`
    (`images` maps a batch's 'image' to the images the towers see)."""
    variables = jax.device_get(jax.jit(lambda r: init_variables(model, config.model.image_size, r))(rng))
    trained = trained_towers(model, config)
    count = initialise.identity_statistics_batches(model, list(trained), config.model.identity_stats_batches)
    measured = []
    if count:
        batches = identity_batches()
        measured = [images(device_augment.prepare(parallel.global_batch(next(batches), mesh))["image"])
                    for _ in range(count)]
    variables = initialise.initial_variables(model, variables, trained=trained, identity_images=measured,
                                             expr_from_id=config.model.init_expr_from_id)
    return variables, sum(x.shape[0] for x in measured)
