"""Benchmark: training-step images/s of the backbone towers and of the full PASN step, optionally against PyTorch.

For every backbone@size x batch x dtype it prints: images/s (median over the timed pairs), GFLOP/image of the step
(model FLOPs counted from the jaxpr), achieved GFLOP/s and its fraction of a jnp.dot peak measured in the same run
(float32 [2048, 2048] on CPU, bfloat16 [8192, 8192] on GPU; with --peak-tflops also the MFU), compile time, and
the process's peak RSS so far.

  tower  the tower alone (IResNet / ResNet of the paper's config, 512-d embedding) with a mean-square loss on the
         embedding and the product's optimizer (SGD momentum 0.9, weight decay 5e-4, pasn_jax.optim).
  pasn   the product's step, pasn_jax.train.train_step (multitask loss eq. 7, SGDR, non-finite guard), on the whole
         PASN (prior: two towers; resnet50: no prior, the paper's ablation), random labels.

--vs-torch builds the PyTorch reference (benchmarks/torch_reference.py; channels_last, same batch, same thread
count, torch.autocast for bfloat16): the tower with the same loss and SGD, or the whole PASN step (f_id frozen in
eval mode, the paper's losses eq. 1-7 by torch_reference.pasn_loss, SGD on f_expr and the heads), imports its
random weights into ours (pasn_jax.models.torch_import; and prints max |ours - torch| of the tower's output or of
the PASN step's loss as a check that both compute the same thing), then times ours and torch alternately and
prints ours/torch per pair and the median.

--kernels sets model.kernels: 'cpu' (XLA:CPU's rewrites of the strided convolutions and the fusion boundary) or
'portable' (the plain lax operations), 'auto' (the default) the one of this backend; each line names the one timed,
so that the two can be compared on one machine.

  python -m benchmarks.train_step --vs-torch                      # the default cases, batch 16, float32
  python -m benchmarks.train_step --cases iresnet50@112 --batch 16 32 --dtype float32 bfloat16 --vs-torch
  python -m benchmarks.train_step --model pasn --cases iresnet50@112 resnet50@112 --vs-torch
  python -m benchmarks.train_step --model pasn --cases iresnet50@112 --kernels portable   # against 'cpu'
"""

import argparse
import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax

from benchmarks import common
from pasn_jax import optim
from pasn_jax.models import pasn, torch_import, towers
from pasn_jax.models.layers import KERNELS

DEFAULT_CASES = ("resnet50@112", "resnet50@224", "iresnet50@112")


def tower_step(module, optimizer):
    """(params, batch_stats, opt_state, images, target) -> the same state after one SGD step, and the loss."""

    def step(params, batch_stats, opt_state, images, target):
        def loss_fn(p):
            emb, updated = module.apply({"params": p, "batch_stats": batch_stats}, images, train=True,
                                        mutable=["batch_stats"])
            return jnp.mean(jnp.square(emb.astype(jnp.float32) - target)), updated["batch_stats"]

        (loss, batch_stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), batch_stats, opt_state, loss

    return step


def torch_tower(backbone: str, size: int, batch: int, placement: common.TorchPlacement, optim_config):
    """(torch model, a step closure) for the PyTorch reference tower, channels_last, train mode."""
    import torch
    from benchmarks import torch_reference

    model = torch_reference.build_tower(backbone, image_size=size)
    runner = placement.model(model)
    opt = torch.optim.SGD(model.parameters(), lr=optim_config.lr, momentum=optim_config.momentum,
                          weight_decay=optim_config.weight_decay)
    images = placement.images(common.random_images(batch, size))
    target = placement.tensor(np.zeros((batch, 512), np.float32))

    def step():
        model.train()
        opt.zero_grad(set_to_none=True)
        with placement.autocast():
            emb = runner(images)
        loss = torch.mean(torch.square(emb.float() - target))
        loss.backward()
        opt.step()
        placement.done()

    return model, step


def check_same_network(module, variables, torch_model, size: int) -> float:
    """Eval-mode max |ours - torch| on 4 images, float32 (our variables were imported from torch_model)."""
    import torch

    x = common.random_images(4, size, seed=1)
    ours = np.asarray(jax.jit(lambda v, x: module.clone(dtype=jnp.float32).apply(v, x, train=False))(variables, x))
    torch_model.eval()
    device = next(torch_model.parameters()).device
    with torch.no_grad():
        theirs = torch_model(torch.from_numpy(x.transpose(0, 3, 1, 2).copy()).to(device)).cpu().numpy()
    return float(np.max(np.abs(ours - theirs)))


def bench_tower(backbone, size, batch, dtype, args, peak):
    config = common.pasn_config(backbone, size, dtype)
    config.model.kernels = args.kernels
    module = towers.tower_module(pasn.build_model(config.model))
    images = jnp.asarray(common.random_images(batch, size))
    target = jnp.zeros((batch, 512), jnp.float32)
    variables = jax.jit(lambda k: module.init(k, images[:1], train=False))(jax.random.key(0))
    torch_step, note = None, ""
    if args.vs_torch:
        placement = common.TorchPlacement(dtype, args.torch_compile)
        torch_model, torch_step = torch_tower(backbone, size, batch, placement, config.optim)
        state = {k: v.detach().cpu().numpy() for k, v in torch_model.state_dict().items()}
        variables = torch_import.tower_from_torch(state, variables, backbone, source="torch reference")
        difference = check_same_network(module, variables, torch_model, size)
        note = f"; same network: eval max |ours - torch| = {difference:.1e}"
    mask = jax.tree.map(lambda _: True, variables["params"])
    optimizer, _ = optim.make_optimizer(config.optim, mask)
    carry = [variables["params"], variables["batch_stats"], optimizer.init(variables["params"])]
    jitted = jax.jit(tower_step(module, optimizer), donate_argnums=(0, 1, 2))
    compiled, compile_s, flops = common.compile_with_cost(jitted, *carry, images, target)

    def ours():
        *new_carry, loss = compiled(*carry, images, target)
        carry[:] = new_carry
        loss.block_until_ready()

    common.report(f"{backbone}@{size} b{batch} {dtype} tower, {module.kernels} kernels", ours, torch_step, batch, flops,
                  compile_s, peak, args, note, kernels=module.kernels)


def pasn_batch(batch: int, size: int) -> dict:
    rng = np.random.default_rng(0)
    return {"image": jnp.asarray(common.random_images(batch, size)),
            "au": jnp.asarray(rng.integers(0, 2, (batch, 12), dtype=np.int32)),
            "au_mask": jnp.ones((batch, 12), bool),
            "expr": jnp.asarray(rng.integers(0, 7, batch, dtype=np.int32)), "expr_mask": jnp.ones(batch, bool),
            "va": jnp.asarray(rng.uniform(-1, 1, (batch, 2)).astype(np.float32)), "va_mask": jnp.ones(batch, bool),
            "preempt": jnp.zeros(batch, jnp.int32), "bad": jnp.zeros(batch, jnp.int32)}


def torch_pasn_step(config, data: dict, placement: common.TorchPlacement):
    """(torch model, a step closure, a closure giving the loss of the current weights in train mode) of the PyTorch
    reference PASN: forward, the paper's losses, backward and SGD on f_expr and the heads (f_id frozen)."""
    import torch
    from benchmarks import torch_reference

    m = config.model
    model = torch_reference.PASN(m.backbone, image_size=m.image_size, prior=m.prior, streaming=m.streaming)
    runner = placement.model(model)
    trainable = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.SGD(trainable, lr=config.optim.lr, momentum=config.optim.momentum,
                          weight_decay=config.optim.weight_decay)
    images = placement.images(np.asarray(data["image"]))
    au, expr, va = (placement.tensor(data[k]) for k in ("au", "expr", "va"))

    def loss():
        model.train()
        with placement.autocast():
            outputs = runner(images)
        return torch_reference.pasn_loss(outputs, au, expr.long(), va, config.loss.smoothing)

    def step():
        opt.zero_grad(set_to_none=True)
        loss().backward()
        opt.step()
        placement.done()

    return model, step, loss


def bench_pasn(backbone, size, batch, dtype, args, peak):
    from benchmarks import torch_reference
    from benchmarks.inference import import_torch_pasn
    from pasn_jax import train, train_state
    from pasn_jax.tasks import pasn as pasn_task

    config = common.pasn_config(backbone, size, dtype)
    config.batch_size = batch
    config.model.kernels = args.kernels
    model = pasn_task.build_model(config)
    optimizer, schedule = train_state.make_optimizer(model, config, pasn_task.trainable_mask)
    variables = train_state.init_variables(model, size, jax.random.key(0))
    data = pasn_batch(batch, size)
    rng = jax.random.key(1)
    theirs, note = None, ""
    if args.vs_torch:
        import torch

        placement = common.TorchPlacement(dtype, args.torch_compile)
        torch_model, theirs, torch_loss = torch_pasn_step(config, data, placement)
        variables = import_torch_pasn(torch_model, variables, config.model)
        float_model = model.clone(dtype=jnp.float32)
        ours_loss = jax.jit(lambda v: pasn_task.loss_fn(float_model, config)(v, data, rng)[0])(variables)
        float32 = common.TorchPlacement("float32")
        float32.device = placement.device
        torch_model.train()
        au, expr, va = (float32.tensor(data[k]) for k in ("au", "expr", "va"))
        with torch.no_grad():
            theirs_loss = torch_reference.pasn_loss(torch_model(float32.images(np.asarray(data["image"]))), au,
                                                    expr.long(), va, config.loss.smoothing)
        difference = abs(float(ours_loss) - float(theirs_loss))
        note = (f"; same step: train-mode loss {float(ours_loss):.6f}, |ours - torch| = {difference:.1e}")
    state = train_state.create_train_state(variables, optimizer, jax.sharding.SingleDeviceSharding(jax.devices()[0]))
    jitted = jax.jit(functools.partial(train.train_step, pasn_task.loss_fn(model, config), optimizer, schedule),
                     donate_argnums=0)
    compiled, compile_s, flops = common.compile_with_cost(jitted, state, data, rng)
    carry = [state]

    def ours():
        carry[0], metrics = compiled(carry[0], data, rng)
        metrics["loss"].block_until_ready()

    kind = "prior f_expr - f_id" if config.model.prior else "no prior"
    common.report(f"{backbone}@{size} b{batch} {dtype} pasn ({kind}), {model.kernels} kernels", ours, theirs, batch,
                  flops, compile_s, peak, args, note, kernels=model.kernels)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", nargs="+", default=list(DEFAULT_CASES), help="BACKBONE@SIZE, e.g. iresnet50@112")
    parser.add_argument("--batch", type=int, nargs="+", default=[16])
    parser.add_argument("--dtype", nargs="+", default=["float32"], choices=sorted(towers.DTYPES))
    parser.add_argument("--model", default="tower", choices=["tower", "pasn"])
    parser.add_argument("--kernels", default="auto", choices=list(KERNELS),
                        help="model.kernels: the towers' layers as XLA:CPU's rewrites ('cpu') or plain lax "
                        "('portable'); 'auto': 'cpu' on a CPU backend, else 'portable'")
    common.add_timing_arguments(parser, steps=2)
    args = parser.parse_args()
    try:
        cases = [common.parse_case(c) for c in args.cases]
    except common.BenchmarkArgumentError as e:
        parser.exit(2, f"error: {e}\n")
    common.run_cases(cases, args, bench_tower if args.model == "tower" else bench_pasn)


if __name__ == "__main__":
    main()
