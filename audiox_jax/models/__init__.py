"""Models: the DiT over log-mel spectrograms."""
from audiox_jax.models.dit import (SIZES, DiT, DiTConfig, config_for, count_params, drop_cond,
                                   flops_per_forward, null_cond)

__all__ = ["SIZES", "DiT", "DiTConfig", "config_for", "count_params", "drop_cond",
           "flops_per_forward", "null_cond"]
