"""audiox-jax: real-time diffusion-transformer audio generation in JAX/Flax."""

import os as _os


def _has_reduce_bug(jaxlib_version: str) -> bool:
    """True for the jaxlib releases known to have the YNNPACK reduce bug and the flag: 0.10-0.12."""
    try:
        major, minor = (int(p) for p in jaxlib_version.split(".")[:2])
    except ValueError:
        return False
    return (major, minor) in {(0, 10), (0, 11), (0, 12)}


def _work_around_xla_cpu_reduce_bug() -> None:
    """jaxlib 0.10 on CPU miscompiles some reductions fused by YNNPACK: under jit,
    ``sum(log(t) - log(t / 2))`` over 4096 elements returns 0.0 (eager: 2839.13) -- a second
    log/expm1/log1p in one large reduction silently reuses the first one's values. That
    breaks log-domain losses and metrics. Turning YNNPACK's reduce fusion off fixes it.
    XLA reads XLA_FLAGS when the backend starts, so this works if audiox_jax is imported
    before the first JAX computation; ``tests/test_xla_workaround.py`` checks the result.
    The bug is still in jaxlib 0.12 (measured on 0.12.0.1, where the same flag fixes it), so
    every jaxlib from 0.10 to 0.12 gets the flag; older ones do not know it (an XLA that does
    not know a flag aborts). A newer jaxlib with the bug fails that test: add it here."""
    try:
        from importlib.metadata import version

        jaxlib_version = version("jaxlib")
    except Exception:  # noqa: BLE001 - no jaxlib metadata: nothing to patch
        return
    flag = "--xla_cpu_experimental_ynn_fusion_type=-reduce"
    flags = _os.environ.get("XLA_FLAGS", "")
    if _has_reduce_bug(jaxlib_version) and "ynn_fusion_type" not in flags:
        _os.environ["XLA_FLAGS"] = (flags + " " + flag).strip()


_work_around_xla_cpu_reduce_bug()

__version__ = "0.1.0"


def __getattr__(name):
    """``audiox_jax.load_pipeline`` without importing jax/flax when the package is imported."""
    if name == "load_pipeline":
        from audiox_jax.generator import load_pipeline

        return load_pipeline
    raise AttributeError(f"module 'audiox_jax' has no attribute {name!r}")
