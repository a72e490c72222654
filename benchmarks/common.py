"""Shared benchmark helpers: the machine line, benchmark cases, a matmul peak, alternating A/B timing, model FLOPs
counted from the jaxpr, peak RSS.

Ratios ours / PyTorch are measured alternately (ours, torch, ours, torch, ...) in one process and summarised by the
median of the per-pair ratios, because the 2-core machine is shared and its speed drifts within a minute.
"""

import datetime
import json
import os
import platform
import resource
import statistics
import time
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from pasn_jax import xla_flags
from pasn_jax.models.towers import BACKBONES


# The XLA flags `python -m pasn_jax.main` applies (pasn_jax/xla_flags.py); the benchmarks apply them by default.
RECOMMENDED_XLA_FLAGS = " ".join(xla_flags.RECOMMENDED)


class BenchmarkArgumentError(ValueError):
    """A command-line value that cannot be benchmarked; the message names it."""


def parse_case(case: str) -> tuple[str, int]:
    """BACKBONE@SIZE -> (backbone, size)."""
    backbone, _, size = case.partition("@")
    if backbone not in BACKBONES or not size.isdigit():
        raise BenchmarkArgumentError(f"--cases: expected BACKBONE@SIZE with BACKBONE in {sorted(BACKBONES)}, "
                                     f"got {case!r}")
    return backbone, int(size)


def apply_xla_flags(flags: str) -> None:
    """Adds `flags` to XLA_FLAGS; must run before jax initialises its backend (the first computation)."""
    xla_flags.add_xla_flags(tuple(flags.split()))


def cpu_model() -> str:
    if os.path.exists("/proc/cpuinfo"):
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


def cpu_flags() -> set[str]:
    if os.path.exists("/proc/cpuinfo"):
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    return set()


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a"


def machine(with_torch: bool = False) -> str:
    """CPU model, cores, versions, XLA_FLAGS, date and the 1/5/15-minute load average, in one line."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    bf16 = "avx512_bf16" if "avx512_bf16" in cpu_flags() else "no avx512_bf16"
    device = jax.devices()[0]
    versions = f"jax {jax.__version__}, {device.platform} ({device.device_kind}) x{jax.device_count()}"
    if with_torch:
        import torch
        versions += f", torch {torch.__version__} ({torch.get_num_threads()} threads)"
    flags = os.environ.get("XLA_FLAGS", "")
    return (f"{cpu_model()} ({bf16}), {cores} cores; python {platform.python_version()}, {versions}; "
            f"XLA_FLAGS={flags!r}; {datetime.datetime.now().isoformat(timespec='seconds')}; "
            f"load average {load_average()}")


def matmul_peak(repeats: int = 5) -> tuple[float, str]:
    """(GFLOP/s, description) of a jitted square jnp.dot, best of `repeats`: the matmul peak measured now. CPU:
    float32 [2048, 2048]; GPU: bfloat16 [8192, 8192] with float32 accumulation."""
    gpu = jax.devices()[0].platform == "gpu"
    n, dtype = (8192, jnp.bfloat16) if gpu else (2048, jnp.float32)
    a = jax.random.normal(jax.random.key(0), (n, n), dtype)
    b = jax.random.normal(jax.random.key(1), (n, n), dtype)
    dot = jax.jit(lambda x, y: jnp.dot(x, y, preferred_element_type=jnp.float32))
    dot(a, b).block_until_ready()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        dot(a, b).block_until_ready()
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best / 1e9, f"{jnp.dtype(dtype).name} [{n}, {n}] jnp.dot, best of {repeats}"


def _equation_flops(eqn) -> float:
    """2 x multiply-adds of a convolution or a matrix product; 0 for anything else (elementwise work is not counted,
    as in the usual model-FLOPs definition of MFU)."""
    out = eqn.outvars[0].aval.shape
    if eqn.primitive.name == "conv_general_dilated":
        rhs = eqn.invars[1].aval.shape
        out_features = rhs[eqn.params["dimension_numbers"].rhs_spec[0]]
        return 2.0 * np.prod(out) * np.prod(rhs) / out_features  # per output: in-features/group x kernel window
    if eqn.primitive.name == "dot_general":
        (contracting, _), _ = eqn.params["dimension_numbers"]
        lhs = eqn.invars[0].aval.shape
        return 2.0 * np.prod(out) * np.prod([lhs[d] for d in contracting])
    return 0.0


def _jaxpr_flops(jaxpr) -> float:
    total = 0.0
    for eqn in jaxpr.eqns:
        total += _equation_flops(eqn)
        for param in eqn.params.values():  # nested computations: jit, custom_vjp/jvp, remat, cond branches
            for sub in param if isinstance(param, list | tuple) else [param]:
                inner = getattr(sub, "jaxpr", sub)
                if hasattr(inner, "eqns"):
                    total += _jaxpr_flops(inner)
    return total


def model_flops(fn: Callable, *args) -> float:
    """FLOPs of one call of `fn`, counted from its jaxpr (convolutions and matrix products, forward, backward and
    optimizer alike): the same number on every backend, unlike XLA's cost analysis, which on GPU leaves out the
    convolutions it hands to cuDNN (an IR-50 PASN step: 1.7 against ~188 GFLOP/img)."""
    return _jaxpr_flops(jax.make_jaxpr(fn)(*args).jaxpr)


def compile_with_cost(jitted, *args) -> tuple[Callable, float, float]:
    """(compiled function, seconds to lower + compile, model FLOPs per call counted from the jaxpr)."""
    flops = model_flops(jitted, *args)
    start = time.perf_counter()
    compiled = jitted.lower(*args).compile()
    return compiled, time.perf_counter() - start, flops


def peak_rss_mib() -> float:
    """This process's peak resident set size so far (MiB; Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _cpu_counters() -> tuple[float, float]:
    """(busy CPU seconds of the whole machine, CPU seconds of this process) so far; (nan, nan) without /proc."""
    try:
        with open("/proc/stat") as f:
            ticks = [int(v) for v in f.readline().split()[1:9]]
    except OSError:
        return float("nan"), float("nan")
    busy = sum(ticks) - ticks[3] - ticks[4]  # all but idle and iowait
    own = os.times()
    return busy / os.sysconf("SC_CLK_TCK"), own.user + own.system


def time_steps(step: Callable[[], None], steps: int) -> tuple[float, float]:
    """(seconds per call of `step`, averaged over `steps` calls; share of the machine's CPUs that other processes
    used meanwhile, 0..1). `step` must block until its result is ready."""
    busy0, own0 = _cpu_counters()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    wall = time.perf_counter() - start
    busy1, own1 = _cpu_counters()
    others = max(0.0, (busy1 - busy0) - (own1 - own0)) / (wall * (os.cpu_count() or 1))
    return wall / steps, min(others, 1.0)


def alternate(runs: dict[str, Callable[[], None]], pairs: int, steps: int, warmup: int = 1, quiet: float = 1.0,
              retries: int = 0, wait_s: float = 10.0) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """Seconds per step of each run, measured in turn (A, B, A, B, ...) `pairs` times, and the share of the CPUs
    other processes used during each of those timings.

    Each timed run follows `warmup` untimed calls of the same run: the first step after the other framework ran is
    not a steady-state step (on these VMs its page faults cost ~2x, measured: BENCHMARKS.md). A round in which other
    processes used more than `quiet` of the CPUs is measured again (after `wait_s` seconds), at most `retries` times.
    """
    times = {name: [] for name in runs}
    others = {name: [] for name in runs}
    for _ in range(pairs):
        for attempt in range(retries + 1):
            measured = {}
            for name, step in runs.items():
                for _ in range(warmup):
                    step()
                measured[name] = time_steps(step, steps)
            if max(share for _, share in measured.values()) <= quiet or attempt == retries:
                break
            time.sleep(wait_s)
        for name, (seconds, share) in measured.items():
            times[name].append(seconds)
            others[name].append(share)
    return times, others


def ratios(ours: list[float], theirs: list[float]) -> list[float]:
    """Per-pair speed ratios ours / theirs (images/s), i.e. their seconds per step over ours."""
    return [t / o for o, t in zip(ours, theirs, strict=True)]


def median(values: list[float]) -> float:
    return float(statistics.median(values))


def fmt_ratios(values: list[float]) -> str:
    return " ".join(f"{v:.2f}" for v in values)


def add_timing_arguments(parser, steps: int) -> None:
    """--steps, --pairs, --vs-torch, --quiet, --retries, --xla-flags (shared by the benchmark CLIs)."""
    parser.add_argument("--xla-flags", default=RECOMMENDED_XLA_FLAGS,
                        help="appended to XLA_FLAGS before jax starts ('' for XLA's defaults)")
    parser.add_argument("--steps", type=int, default=steps, help="calls per timed run")
    parser.add_argument("--pairs", type=int, default=5, help="timed runs of each (alternating with torch)")
    parser.add_argument("--vs-torch", action="store_true", help="time the PyTorch reference alternately (on the GPU "
                        "when torch sees one: eager with AMP and channels_last)")
    parser.add_argument("--torch-compile", action="store_true",
                        help="with --vs-torch: the reference through torch.compile (the stronger anchor)")
    parser.add_argument("--quiet", type=float, default=0.1,
                        help="re-measure a round in which other processes used more than this share of the CPUs")
    parser.add_argument("--retries", type=int, default=5, help="re-measurements per round at most (10 s apart)")
    parser.add_argument("--peak-tflops", type=float, default=0.0,
                        help="the accelerator's dense peak for the MFU line (H200 bf16: 989)")
    parser.add_argument("--json", default="", help="also append one JSON line per measured case to this file")


def report(name: str, ours: Callable[[], None], theirs: Callable[[], None] | None, batch: int, flops: float,
           compile_s: float, peak: float, args, note: str = "", kernels: str = "") -> None:
    """Times ours (and theirs, alternately) and prints images/s, GFLOP/image, GFLOP/s, fraction of the matmul
    peak, compile time, peak RSS, the other processes' CPU share per round and the per-pair ratios; `kernels`
    (the towers' model.kernels, where given) goes into the JSON record."""
    runs = {"ours": ours} if theirs is None else {"ours": ours, "torch": theirs}
    times, others = alternate(runs, args.pairs, args.steps, quiet=args.quiet, retries=args.retries)
    seconds = median(times["ours"])
    gflops = flops / seconds / 1e9
    print(f"{name}: {batch / seconds:.2f} img/s, {flops / batch / 1e9:.2f} GFLOP/img (model), {gflops:.0f} GFLOP/s "
          f"= {gflops / peak:.2f} of the {peak:.0f} GFLOP/s matmul peak; compile {compile_s:.1f} s; "
          f"peak RSS {peak_rss_mib():.0f} MiB{note}", flush=True)
    mfu = gflops / (args.peak_tflops * 1e3) if args.peak_tflops else None
    if mfu is not None:
        print(f"  MFU {mfu:.1%} of {args.peak_tflops:g} TFLOP/s", flush=True)
    busy = [max(shares) for shares in zip(*others.values())]
    print(f"  other processes' CPU share per round: {fmt_ratios(busy)}", flush=True)
    record = {"case": name, "batch": batch, "img_per_s": batch / seconds, "gflop_per_img": flops / batch / 1e9,
              "matmul_peak_fraction": gflops / peak, "compile_s": compile_s, "mfu": mfu}
    if kernels:
        record["kernels"] = kernels
    if theirs is not None:
        r = ratios(times["ours"], times["torch"])
        quiet = [v for v, b in zip(r, busy) if b <= args.quiet]
        quiet_note = f"; median of the {len(quiet)} quiet rounds {median(quiet):.2f}" if quiet and \
            len(quiet) < len(r) else ""
        torch_img_per_s = batch / median(times["torch"])
        print(f"  torch {torch_img_per_s:.2f} img/s; ours/torch per pair: {fmt_ratios(r)}; "
              f"median {median(r):.2f}{quiet_note}", flush=True)
        record.update(torch_img_per_s=torch_img_per_s, ours_over_torch=median(r),
                      torch_compiled=bool(getattr(args, "torch_compile", False)))
    if args.json:
        with open(args.json, "a") as f:
            f.write(json.dumps(record) + "\n")


def pasn_config(backbone: str, size: int, dtype: str):
    """configs/abaw.py (the paper's recipe) for a benchmark case: resnet50 without prior (the paper's ablation),
    an iresnet as the prior model's towers."""
    from configs import abaw

    config = abaw.get_config("no_prior" if backbone == "resnet50" else None)
    config.data.image_size = size  # model.image_size follows it
    config.model.backbone = backbone
    config.model.dtype = dtype
    return config


def run_cases(cases: list[tuple[str, int]], args, bench: Callable) -> None:
    """Applies --xla-flags, prints the machine and the matmul peak, then runs `bench` for every case x batch x
    dtype (the shared main loop of train_step.py and inference.py)."""
    apply_xla_flags(args.xla_flags)
    if args.vs_torch:
        import torch
        torch.set_num_threads(len(os.sched_getaffinity(0)))
    print(f"machine: {machine(with_torch=args.vs_torch)}", flush=True)
    peak, what = matmul_peak()
    print(f"matmul peak ({what}): {peak:.0f} GFLOP/s", flush=True)
    for backbone, size in cases:
        for batch in args.batch:
            for dtype in args.dtype:
                bench(backbone, size, batch, dtype, args, peak)
    print(f"done; load average now {load_average()}", flush=True)


class TorchPlacement:
    """Where the PyTorch reference runs: the GPU when torch sees one, else the CPU; AMP (autocast) for bfloat16,
    `torch.compile` when asked, and a synchronising `done()` for the timer."""

    def __init__(self, dtype: str, compile_model: bool = False):
        import torch
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        self.dtype, self.compile_model = dtype, compile_model

    def model(self, module):
        import torch
        module = module.to(self.device, memory_format=torch.channels_last)
        return torch.compile(module) if self.compile_model else module

    def images(self, images_nhwc: np.ndarray):
        import torch
        x = torch.from_numpy(np.ascontiguousarray(images_nhwc.transpose(0, 3, 1, 2)))
        return x.to(self.device).contiguous(memory_format=torch.channels_last)

    def tensor(self, array):
        import torch
        return torch.from_numpy(np.array(array)).to(self.device)

    def autocast(self):
        import torch
        return torch.autocast(self.device, dtype=torch.bfloat16, enabled=self.dtype == "bfloat16")

    def done(self) -> None:
        import torch
        if self.device == "cuda":
            torch.cuda.synchronize()


def random_images(batch: int, size: int, seed: int = 0) -> np.ndarray:
    """[batch, size, size, 3] float32 in [-1, 1] (NHWC, our input convention)."""
    return np.random.default_rng(seed).uniform(-1, 1, (batch, size, size, 3)).astype(np.float32)
