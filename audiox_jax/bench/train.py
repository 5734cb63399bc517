"""`audiox-jax bench train`: train-step time, examples/s, tokens/s, achieved FLOP/s and MFU.

FLOPs are analytic: 3 x ``flops_per_forward`` (forward + backward) for a batch of 1 s clips;
MFU divides by the device's data-sheet peak on known GPUs, else by a measured f32 matmul.
"""

from __future__ import annotations

import time

import jax
import numpy as np

from audiox_jax.bench.harness import device_peak, row, time_calls
from audiox_jax.config import load_config
from audiox_jax.models.dit import flops_per_forward
from audiox_jax.training.loop import fresh_state, make_layout
from audiox_jax.training.sharding import make_mesh
from audiox_jax.training.state import make_ema, make_optimizer


def bench_train(*, quick: bool = False, repeats: int = 5) -> list[dict]:
    """Train-step time, examples/s, tokens/s, achieved FLOP/s and MFU (analytic DiT FLOPs x 3)."""
    on_gpu = jax.default_backend() == "gpu"
    if quick:
        grid = [("tiny", ["model.size=tiny"], 8)]
    elif on_gpu:
        grid = [("base bf16", ["model.size=base", "model.dtype=bfloat16"], 64),
                ("base bf16 cudnn", ["model.size=base", "model.dtype=bfloat16", "model.attn_impl=cudnn"], 64),
                ("small f32", ["model.size=small"], 64)]
    else:
        grid = [("default (dim 192, 6 blocks)", ["model.dim=192", "model.depth=6", "model.heads=3"], 32),
                ("small", ["model.size=small"], 32)]
    rows = []
    for name, overrides, batch in grid:
        config = load_config(None, overrides + [f"data.batch_size={batch}", "model.labels=[[instrument,6],[pitch,37]]",
                                                "train.warmup_steps=1", "train.ema_warmup=1"])
        mesh = make_mesh()
        optimizer, ema_fn = make_optimizer(config.train), make_ema(config.train)
        layout = make_layout(config, optimizer, ema_fn, mesh)
        frames = 88  # 1 s at 22.05 kHz, hop 256, rounded up to the patch
        rng = np.random.default_rng(0)
        host = {"x0": rng.standard_normal((batch, config.model.n_mels, frames)).astype(np.float32),
                "labels": np.zeros((batch, 2), np.int32)}
        b = layout.put(host)
        state = fresh_state(config, layout, optimizer, ema_fn)
        t0 = time.perf_counter()
        state, metrics = layout.step(state, b)
        jax.block_until_ready(metrics)
        compile_s = time.perf_counter() - t0
        holder = {"state": state}

        def one():
            holder["state"], m = layout.step(holder["state"], b)
            return m

        t = time_calls(one, repeats=repeats, warmup=2)
        t["compile_s"] = compile_s
        flops = 3 * flops_per_forward(config.model, frames, batch=batch)
        peak, source = device_peak(config.model.dtype)
        tokens = batch * frames // config.model.patch
        n_params = sum(int(np.prod(p.shape)) for p in jax.tree.leaves(holder["state"].params))
        rows.append(row(f"train step {name} b{batch} 1s clips", t, params_m=n_params / 1e6,
                        examples_per_s=batch / t["median_s"], tokens_per_s=tokens / t["median_s"],
                        tflop_per_s=flops / t["median_s"] / 1e12, mfu=flops / t["median_s"] / peak, peak_source=source))
    return rows
