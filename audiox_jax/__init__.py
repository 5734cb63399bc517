"""audiox-jax: real-time diffusion-transformer audio generation in JAX/Flax."""

import os as _os


def _work_around_xla_cpu_reduce_bug() -> None:
    """jaxlib 0.10 on CPU miscompiles some reductions fused by YNNPACK: under jit,
    ``sum(log(t) - log(t / 2))`` over 4096 elements returns 0.0 (eager: 2839.13) -- a second
    log/expm1/log1p in one large reduction silently reuses the first one's values. That
    breaks log-domain losses and metrics. Turning YNNPACK's reduce fusion off fixes it.
    XLA reads XLA_FLAGS when the backend starts, so this works if audiox_jax is imported
    before the first JAX computation; ``tests/test_xla_workaround.py`` checks the result.
    Only jaxlib 0.10.x gets the flag: an XLA that does not know a flag aborts."""
    try:
        from importlib.metadata import version

        jaxlib_version = version("jaxlib")
    except Exception:  # noqa: BLE001 - no jaxlib metadata: nothing to patch
        return
    flag = "--xla_cpu_experimental_ynn_fusion_type=-reduce"
    flags = _os.environ.get("XLA_FLAGS", "")
    if jaxlib_version.startswith("0.10.") and "ynn_fusion_type" not in flags:
        _os.environ["XLA_FLAGS"] = (flags + " " + flag).strip()


_work_around_xla_cpu_reduce_bug()

__version__ = "0.1.0"


def __getattr__(name):
    """``audiox_jax.load_pipeline`` without importing jax/flax when the package is imported."""
    if name == "load_pipeline":
        from audiox_jax.generator import load_pipeline

        return load_pipeline
    raise AttributeError(f"module 'audiox_jax' has no attribute {name!r}")
