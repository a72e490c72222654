"""Benchmark: forward-only images/s of the whole PASN (paper Fig. 1), optionally against the PyTorch reference.

Cases are BACKBONE@SIZE: an iresnet runs the prior model (f_expr - f_id: two towers) with the streaming heads, as the
paper's PASN; resnet50 runs without prior (the paper's "w/o prior model" ablation: one tower). Per case it prints
images/s (median of the timed rounds), GFLOP/image (model FLOPs counted from the jaxpr), achieved GFLOP/s and its
fraction of a jnp.dot peak measured in the same run (as benchmarks/train_step.py; --peak-tflops adds the MFU),
compile time and peak RSS.

--vs-torch builds benchmarks/torch_reference.PASN with random weights, imports them into ours (towers through
pasn_jax.models.torch_import, heads through torch_reference.heads_to_flax), prints the max |ours - torch| over the
three outputs as a check that both compute the same function, then times both alternately (torch: eval mode,
inference_mode, channels_last, torch.autocast for bfloat16) and prints ours/torch per pair and the median.

  python -m benchmarks.inference --vs-torch                    # iresnet50@112 (prior) and resnet50@112, batch 16
  python -m benchmarks.inference --cases iresnet50@224 --batch 16 64 --dtype float32 bfloat16
"""

import argparse

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks import common
from pasn_jax.models import pasn, torch_import, towers

DEFAULT_CASES = ("iresnet50@112", "resnet50@112")


def import_torch_pasn(torch_model, variables, config) -> dict:
    """Our variables with every weight of the PyTorch reference PASN (towers and heads)."""
    from benchmarks import torch_reference

    names = ("f_expr", "f_id") if config.prior else ("backbone",)
    for name in names:
        state = {k: v.detach().cpu().numpy() for k, v in torch_model.tower(name).state_dict().items()}
        tower = torch_import.tower_from_torch(state, towers.get_tower(variables, name), config.backbone,
                                              source=f"torch reference {name}")
        variables = towers.set_tower(variables, name, tower)
    heads = torch_reference.heads_to_flax(torch_model.heads)
    ours = variables["params"]["heads"]
    if jax.tree.map(np.shape, heads) != jax.tree.map(np.shape, ours):
        raise common.BenchmarkArgumentError("torch reference heads: structure or shapes differ from ours")
    params = {**variables["params"], "heads": jax.tree.map(jnp.asarray, heads)}
    return {**variables, "params": params}


def torch_pasn(config, batch: int, placement: common.TorchPlacement):
    """(torch model, a forward closure) of the PyTorch reference PASN, eval mode, channels_last."""
    import torch
    from benchmarks import torch_reference

    model = torch_reference.PASN(config.backbone, image_size=config.image_size, prior=config.prior,
                                 streaming=config.streaming).eval()
    runner = placement.model(model)
    images = placement.images(common.random_images(batch, config.image_size))

    def forward():
        with torch.inference_mode(), placement.autocast():
            runner(images)
        placement.done()

    return model, forward


def check_same_function(model, variables, torch_model, size: int) -> float:
    """max |ours - torch| over au, expr, va on 4 images in float32 (eval mode)."""
    import torch

    x = common.random_images(4, size, seed=1)
    ours = jax.jit(lambda v, x: model.clone(dtype=jnp.float32).apply(v, x, train=False))(variables, x)
    device = next(torch_model.parameters()).device
    with torch.inference_mode():
        theirs = torch_model(torch.from_numpy(x.transpose(0, 3, 1, 2).copy()).to(device))
    return max(float(np.max(np.abs(np.asarray(ours[k]) - theirs[k].float().cpu().numpy()))) for k in ours)


def bench(backbone, size, batch, dtype, args, peak):
    config = common.pasn_config(backbone, size, dtype).model
    model = pasn.build_model(config)
    images = jnp.asarray(common.random_images(batch, size))
    variables = jax.jit(lambda k: model.init(k, images[:1], train=False))(jax.random.key(0))
    theirs, note = None, ""
    if args.vs_torch:
        torch_model, theirs = torch_pasn(config, batch, common.TorchPlacement(dtype, args.torch_compile))
        variables = import_torch_pasn(torch_model, variables, config)
        note = f"; same function: max |ours - torch| = {check_same_function(model, variables, torch_model, size):.1e}"
    jitted = jax.jit(lambda v, x: model.apply(v, x, train=False))
    compiled, compile_s, flops = common.compile_with_cost(jitted, variables, images)

    def ours():
        compiled(variables, images)["va"].block_until_ready()

    kind = "prior f_expr - f_id" if config.prior else "no prior"
    common.report(f"{backbone}@{size} b{batch} {dtype} PASN inference ({kind})", ours, theirs, batch, flops,
                  compile_s, peak, args, note)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", nargs="+", default=list(DEFAULT_CASES), help="BACKBONE@SIZE, e.g. iresnet50@112")
    parser.add_argument("--batch", type=int, nargs="+", default=[16])
    parser.add_argument("--dtype", nargs="+", default=["float32"], choices=sorted(towers.DTYPES))
    common.add_timing_arguments(parser, steps=3)
    args = parser.parse_args()
    try:
        cases = [common.parse_case(c) for c in args.cases]
    except common.BenchmarkArgumentError as e:
        parser.exit(2, f"error: {e}\n")
    common.run_cases(cases, args, bench)


if __name__ == "__main__":
    main()
