"""A diffusion transformer (DiT) over log-mel spectrograms, in Flax linen.

Data path (Peebles & Xie 2023, "Scalable Diffusion Models with Transformers"):
  x f32[B, n_mels, T] -> patchify along time: a token is `patch` frames x all mel bins
  -> Dense to `dim` -> `depth` adaLN-Zero blocks (self-attention with rotary q/k, optional
  cross-attention, MLP) -> final adaLN + Dense -> unpatchify -> f32[B, n_mels, T].

Conventions, stated once:
- The conditioning vector c f32[B, dim] = MLP(sinusoid(t * time_scale)) + one embedding per
  label + Dense(vec). Every block reads shift/scale/gate from silu(c) through a Dense that
  starts at zero, and so do the final layer's shift/scale and output Dense: at init the model
  outputs exactly zero (adaLN-Zero).
- Labels: i32, -1 is the null label (the extra, learned row num_classes of each table). Any
  other value outside [0, num_classes) gives NaN (the table lookup's fill), so it shows.
- Sequence conditioning: seq f32[B, L, seq_dim] is projected to `dim`; a learned null token
  is always put in front (never masked), so an all-masked sequence is well defined. "cross":
  each block cross-attends to [null, seq]; "prepend": [null, seq] tokens go in front of the
  audio tokens, share the blocks, and are dropped before the final layer. Prefix tokens have
  rotary position 0 (no rotation); audio token i has position i, so any length runs.
- Params are always float32; `dtype` is the compute dtype; the output is float32.
- Missing cond keys mean "unconditional" for that input (labels -1, vec 0, no seq).
- Interval (few-step models, ``interval=True``): a second scalar h f32[B] >= 0, the length of
  the step the output should cover in formulation time (``diffusion.fewstep``), is embedded
  like t (its own MLP, last Dense zero-initialised) and added to c. So a model made by
  fine-tuning a plain checkpoint starts as exactly that checkpoint for every h, and h=0
  (the default when h is not passed) is the instantaneous prediction.
- Length (``length_cond=True``): cond["length"] f32[B] is the content length in frames
  (1 <= length <= T; missing = T). Frames at or past it are padding: they are zeroed at the
  input, masked out of self-attention as keys (a token is kept when its first frame is
  content) and zeroed at the output, so padding has no influence on the content frames.
  The length is embedded like t (sinusoid of the frame count, its own MLP whose last Dense
  starts at zero) and added to c, so the model knows where its sound must end (as
  stable-audio-tools conditions on seconds).
"""
import dataclasses
import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from audiox_jax.errors import ParamError

_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}
_SEQ_MODES = ("cross", "prepend")
_ATTN_IMPLS = (None, "xla", "cudnn")
FREQ_DIM = 256  # width of the sinusoidal timestep features fed to the timestep MLP


@dataclasses.dataclass(frozen=True, kw_only=True)
class DiTConfig:
    """Static shape of a DiT. The model sees only this.

    n_mels: mel bins per frame (80). patch: frames per token (4; T must be a multiple).
    dim, depth, heads: width, number of blocks, attention heads (dim/heads even, for rotary).
    mlp_ratio: MLP hidden width / dim. labels: ((name, num_classes), ...) class labels.
    vec_dim: width of a global conditioning vector, 0 = none. seq_dim: width of a conditioning
    sequence, 0 = none; seq_mode: "cross" (cross-attention) or "prepend" (extra tokens).
    dtype: compute dtype, "float32" or "bfloat16". remat: recompute blocks in the backward pass.
    time_scale: t is multiplied by this before the sinusoid (1000 for t in [0, 1]).
    attn_impl: passed to jax.nn.dot_product_attention; None is XLA in jax 0.10, "cudnn" asks
    for the cuDNN flash kernel (GPU, bfloat16 only).
    interval: also condition on the step length h (few-step objectives, ``diffusion.fewstep``).
    length_cond: condition on the content length in frames and mask the padding after it
    (cond["length"], see the module docstring).
    """

    n_mels: int = 80
    patch: int = 4
    dim: int
    depth: int
    heads: int
    mlp_ratio: float = 4.0
    labels: tuple[tuple[str, int], ...] = ()
    vec_dim: int = 0
    seq_dim: int = 0
    seq_mode: str = "cross"
    dtype: str = "float32"
    remat: bool = False
    time_scale: float = 1000.0
    attn_impl: str | None = None
    interval: bool = False
    length_cond: bool = False

    def __post_init__(self):
        for name in ("n_mels", "patch", "dim", "depth", "heads"):
            if int(getattr(self, name)) < 1:
                raise ParamError(f"{name}={getattr(self, name)} must be >= 1; pass a positive int")
        for name in ("vec_dim", "seq_dim"):
            if int(getattr(self, name)) < 0:
                raise ParamError(f"{name}={getattr(self, name)} must be >= 0; 0 disables it")
        if self.dim % self.heads:
            raise ParamError(f"dim={self.dim} must be a multiple of heads={self.heads}; "
                             f"try heads={math.gcd(self.dim, self.heads)}")
        if (self.dim // self.heads) % 2:
            raise ParamError(f"head dim dim/heads={self.dim}/{self.heads}={self.dim // self.heads} "
                             "must be even for rotary embeddings; change dim or heads")
        if self.mlp_ratio <= 0 or int(self.dim * self.mlp_ratio) < 1:
            raise ParamError(f"mlp_ratio={self.mlp_ratio} must be > 0; the usual value is 4.0")
        if self.time_scale <= 0:
            raise ParamError(f"time_scale={self.time_scale} must be > 0; use 1000 for t in [0, 1]")
        if self.dtype not in _DTYPES:
            raise ParamError(f"dtype={self.dtype!r} is not one of {sorted(_DTYPES)}")
        if self.seq_mode not in _SEQ_MODES:
            raise ParamError(f"seq_mode={self.seq_mode!r} is not one of {list(_SEQ_MODES)}")
        if self.attn_impl not in _ATTN_IMPLS:
            raise ParamError(f"attn_impl={self.attn_impl!r} is not one of {list(_ATTN_IMPLS)}")
        labels = tuple(tuple(pair) for pair in self.labels)  # YAML gives lists; keep it hashable
        for pair in labels:
            if len(pair) != 2 or not isinstance(pair[0], str) or int(pair[1]) < 1:
                raise ParamError(f"labels entry {pair!r} must be (name: str, num_classes >= 1)")
        names = [name for name, _ in labels]
        if len(set(names)) != len(names):
            raise ParamError(f"labels names {names} must be unique; rename the duplicates")
        object.__setattr__(self, "labels", tuple((n, int(k)) for n, k in labels))


SIZES = {
    "tiny": dict(dim=96, depth=2, heads=4),  # 0.45M params (no conditioning): CPU tests
    "small": dict(dim=256, depth=8, heads=4),  # 9.9M
    "base": dict(dim=768, depth=12, heads=12),  # 130M (DiT-B widths)
    "large": dict(dim=1024, depth=24, heads=16),  # 457M (DiT-L widths)
}


def config_for(size: str, **overrides) -> DiTConfig:
    """The DiTConfig for a named size in SIZES, with any DiTConfig field overridden."""
    if size not in SIZES:
        raise ParamError(f"size={size!r} is not one of {list(SIZES)}")
    fields = {f.name for f in dataclasses.fields(DiTConfig)}
    unknown = sorted(set(overrides) - fields)
    if unknown:
        raise ParamError(f"overrides {unknown} are not DiTConfig fields; valid: {sorted(fields)}")
    return DiTConfig(**{**SIZES[size], **overrides})


def timestep_features(t: jax.Array, dim: int = FREQ_DIM, max_period: float = 1e4) -> jax.Array:
    """f32[B] (already scaled) -> f32[B, dim]: [cos, sin] at frequencies 1 .. 1/max_period."""
    half = dim // 2
    freqs = jnp.exp(-math.log(max_period) * jnp.arange(half, dtype=jnp.float32) / half)
    args = t.astype(jnp.float32)[:, None] * freqs[None]  # [B, dim/2]
    return jnp.concatenate([jnp.cos(args), jnp.sin(args)], axis=-1)


def rope_tables(positions: jax.Array, head_dim: int) -> tuple[jax.Array, jax.Array]:
    """i32[N] token positions -> (cos, sin), each f32[N, head_dim/2], base 10000."""
    half = head_dim // 2
    inv_freq = 1.0 / (1e4 ** (jnp.arange(half, dtype=jnp.float32) / half))
    angles = positions.astype(jnp.float32)[:, None] * inv_freq[None]  # [N, hd/2]
    return jnp.cos(angles), jnp.sin(angles)


def apply_rope(x: jax.Array, cos: jax.Array, sin: jax.Array) -> jax.Array:
    """Rotate x [B, N, heads, hd] by position (rotate-half layout), in f32, back to x.dtype."""
    x1, x2 = jnp.split(x.astype(jnp.float32), 2, axis=-1)  # [B, N, H, hd/2] each
    cos, sin = cos[None, :, None], sin[None, :, None]  # [1, N, 1, hd/2]
    return jnp.concatenate([x1 * cos - x2 * sin, x1 * sin + x2 * cos], -1).astype(x.dtype)


def modulate(x: jax.Array, shift: jax.Array, scale: jax.Array) -> jax.Array:
    """x [B, N, D] * (1 + scale [B, D]) + shift [B, D]."""
    return x * (1 + scale[:, None]) + shift[:, None]


def _dense(features: int, dtype: Any, zero: bool = False, **kw) -> nn.Dense:
    init = nn.initializers.zeros if zero else nn.initializers.xavier_uniform()
    return nn.Dense(features, dtype=dtype, param_dtype=jnp.float32, kernel_init=init, **kw)


def _norm(dtype: Any) -> nn.LayerNorm:
    """Parameter-free LayerNorm (adaLN supplies scale and shift)."""
    return nn.LayerNorm(epsilon=1e-6, use_bias=False, use_scale=False, dtype=dtype)


class Attention(nn.Module):
    """Multi-head attention: q from x [B, N, D]; k, v from ctx [B, S, D] (None: from x).

    mask: bool[B, S], True = attend. rope: (cos, sin) f32[N, hd/2], self-attention only.
    """

    heads: int
    dtype: Any
    impl: str | None = None

    @nn.compact
    def __call__(self, x, ctx=None, mask=None, rope=None):
        B, N, D = x.shape
        hd = D // self.heads
        if ctx is None:
            qkv = _dense(3 * D, self.dtype, name="qkv")(x).reshape(B, N, 3, self.heads, hd)
            q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]  # [B, N, H, hd] each
        else:
            q = _dense(D, self.dtype, name="q")(x).reshape(B, N, self.heads, hd)  # [B, N, H, hd]
            kv = _dense(2 * D, self.dtype, name="kv")(ctx).reshape(B, -1, 2, self.heads, hd)
            k, v = kv[:, :, 0], kv[:, :, 1]  # [B, S, H, hd] each
        if rope is not None:
            q, k = apply_rope(q, *rope), apply_rope(k, *rope)
        if mask is not None:
            mask = mask[:, None, None, :]  # [B, 1, 1, S], broadcast over heads and queries
        out = jax.nn.dot_product_attention(q, k, v, mask=mask, implementation=self.impl)
        return _dense(D, self.dtype, name="out")(out.reshape(B, N, D))  # [B, N, D]


class Block(nn.Module):
    """adaLN-Zero block: x [B, N, D] + gated attention + (cross-attention) + gated MLP."""

    config: DiTConfig

    @nn.compact
    def __call__(self, x, c, ctx, ctx_mask, self_mask, rope):
        cfg, dt = self.config, _DTYPES[self.config.dtype]
        mod = _dense(6 * cfg.dim, dt, zero=True, name="adaln")(nn.silu(c))  # [B, 6D]
        shift1, scale1, gate1, shift2, scale2, gate2 = jnp.split(mod, 6, axis=-1)  # [B, D] each
        h = modulate(_norm(dt)(x), shift1, scale1)
        attn = Attention(cfg.heads, dt, cfg.attn_impl, name="attn")
        x = x + gate1[:, None] * attn(h, mask=self_mask, rope=rope)
        if ctx is not None:  # cross-attention, ungated as in PixArt-alpha
            cross = Attention(cfg.heads, dt, cfg.attn_impl, name="cross")
            x = x + cross(nn.LayerNorm(epsilon=1e-6, dtype=dt)(x), ctx, ctx_mask)
        h = modulate(_norm(dt)(x), shift2, scale2)
        h = nn.gelu(_dense(int(cfg.dim * cfg.mlp_ratio), dt, name="mlp_in")(h))  # [B, N, D*r]
        return x + gate2[:, None] * _dense(cfg.dim, dt, name="mlp_out")(h)


def _complete_cond(cfg: DiTConfig, x: jax.Array, t: jax.Array, cond: dict | None) -> dict:
    """Check x, t and cond shapes on the host; fill missing cond keys with their null value."""
    if x.ndim != 3 or x.shape[1] != cfg.n_mels:
        raise ParamError(f"x.shape={x.shape} must be [batch, n_mels={cfg.n_mels}, frames]")
    B, _, T = x.shape
    if T % cfg.patch:
        raise ParamError(f"frames={T} is not a multiple of patch={cfg.patch}; pad frames to "
                         f"{-(-T // cfg.patch) * cfg.patch}")
    if t.shape != (B,):
        raise ParamError(f"t.shape={t.shape} must be [batch={B}]")
    cond = dict(cond or {})
    allowed = {"labels": bool(cfg.labels), "vec": cfg.vec_dim > 0,
               "seq": cfg.seq_dim > 0, "seq_mask": cfg.seq_dim > 0, "length": cfg.length_cond}
    extra = sorted(k for k in cond if not allowed.get(k, False))
    if extra:
        raise ParamError(f"cond keys {extra} are not used by this config (labels={cfg.labels}, "
                         f"vec_dim={cfg.vec_dim}, seq_dim={cfg.seq_dim}); drop them or set "
                         "the config field")
    n_lab = len(cfg.labels)
    labels = cond.setdefault("labels", jnp.full((B, n_lab), -1, jnp.int32))
    if labels.shape != (B, n_lab) or not jnp.issubdtype(labels.dtype, jnp.integer):
        raise ParamError(f"cond['labels'] {labels.dtype}{labels.shape} must be int[{B}, {n_lab}]")
    vec = cond.setdefault("vec", jnp.zeros((B, cfg.vec_dim), jnp.float32))
    if vec.shape != (B, cfg.vec_dim):
        raise ParamError(f"cond['vec'].shape={vec.shape} must be [{B}, vec_dim={cfg.vec_dim}]")
    if "seq_mask" in cond and "seq" not in cond:
        raise ParamError("cond has 'seq_mask' but no 'seq'; pass both")
    seq = cond.setdefault("seq", jnp.zeros((B, 0, cfg.seq_dim), jnp.float32))
    if seq.ndim != 3 or seq.shape[0] != B or seq.shape[2] != cfg.seq_dim:
        raise ParamError(f"cond['seq'].shape={seq.shape} must be [{B}, L, seq_dim={cfg.seq_dim}]")
    mask = cond.setdefault("seq_mask", jnp.ones(seq.shape[:2], bool))
    if mask.shape != seq.shape[:2] or mask.dtype != jnp.bool_:
        raise ParamError(f"cond['seq_mask'] {mask.dtype}{mask.shape} must be bool{seq.shape[:2]}")
    if cfg.length_cond:
        length = cond.setdefault("length", jnp.full((B,), T, jnp.float32))
        if jnp.shape(length) != (B,):
            raise ParamError(f"cond['length'].shape={jnp.shape(length)} must be [batch={B}] (content frames)")
    return cond


def frame_mask(length: jax.Array, frames: int) -> jax.Array:
    """bool[B, frames]: True on content frames, ``frame < length`` (length f32/i32[B] in frames)."""
    return jnp.arange(frames)[None, :] < jnp.asarray(length)[:, None]


class DiT(nn.Module):
    """The audio DiT. `DiT(cfg).init(key, x, t, cond)["params"]` gives f32 params."""

    config: DiTConfig

    @nn.compact
    def __call__(self, x: jax.Array, t: jax.Array, cond: dict | None = None,
                 h: jax.Array | None = None) -> jax.Array:
        """Predict f32[B, n_mels, T] from x f32[B, n_mels, T] and t f32[B] (formulation units).

        cond (each key optional; see module docstring): "labels" i32[B, n_labels] (-1 = null),
        "vec" f32[B, vec_dim], "seq" f32[B, L, seq_dim], "seq_mask" bool[B, L] (True = use).
        h: f32[B] step length in t units, only for ``config.interval`` models (None = 0).
        """
        cfg, dt = self.config, _DTYPES[self.config.dtype]
        cond = _complete_cond(cfg, x, t, cond)
        if h is not None and not cfg.interval:
            raise ParamError("h= (a step length) was passed to a DiT without interval conditioning; "
                             "train a few-step model (model.interval: true) or drop h")
        if h is not None and jnp.shape(h) != t.shape:
            raise ParamError(f"h.shape={jnp.shape(h)} must equal t.shape={t.shape}")
        step_len = h  # the name h is the token activations below
        B, _, T = x.shape
        N, D, p = T // cfg.patch, cfg.dim, cfg.patch
        content = None
        if cfg.length_cond:  # [B, T] content frames; padding is zeroed and masked (module docstring)
            length = jnp.clip(cond["length"].astype(jnp.float32), 1.0, T)
            content = frame_mask(length, T)
            x = jnp.where(content[:, None, :], x, 0.0)

        h = x.astype(dt).transpose(0, 2, 1)  # [B, T, n_mels]
        h = h.reshape(B, N, p * cfg.n_mels)  # [B, T/p, p*n_mels]: p whole frames per token
        h = _dense(D, dt, name="patch_embed")(h)  # [B, T/p, D]

        c = timestep_features(t.astype(jnp.float32) * cfg.time_scale).astype(dt)  # [B, 256]
        c = _dense(D, dt, name="t_mlp_out")(nn.silu(_dense(D, dt, name="t_mlp_in")(c)))  # [B, D]
        if cfg.interval:
            step_len = jnp.zeros_like(t) if step_len is None else step_len
            e = timestep_features(step_len.astype(jnp.float32) * cfg.time_scale).astype(dt)  # [B, 256]
            c = c + _dense(D, dt, zero=True, name="h_mlp_out")(nn.silu(_dense(D, dt, name="h_mlp_in")(e)))
        for i, (name, n) in enumerate(cfg.labels):
            lab = cond["labels"][:, i]  # [B]
            bad = (lab < -1) | (lab >= n)  # -> row n+1, out of the table: NaN, so it shows
            idx = jnp.where(lab == -1, n, jnp.where(bad, n + 1, lab))  # [B], row n = null
            table = nn.Embed(n + 1, D, dtype=dt, param_dtype=jnp.float32, name=f"label_{name}",
                             embedding_init=nn.initializers.normal(0.02))
            c = c + table(idx)  # [B, D]
        if cfg.vec_dim:
            c = c + _dense(D, dt, name="vec_proj")(cond["vec"].astype(dt))  # [B, D]
        if cfg.length_cond:
            e = timestep_features(length).astype(dt)  # [B, 256], the frame count as a position
            c = c + _dense(D, dt, zero=True, name="len_mlp_out")(nn.silu(_dense(D, dt, name="len_mlp_in")(e)))

        ctx = ctx_mask = self_mask = None
        if content is not None:
            self_mask = content[:, ::p]  # [B, T/p]: a token is content when its first frame is
        positions = jnp.arange(N)
        if cfg.seq_dim:
            null = self.param("seq_null", nn.initializers.normal(0.02), (D,), jnp.float32)
            ctx = _dense(D, dt, name="seq_proj")(cond["seq"].astype(dt))  # [B, L, D]
            ctx = jnp.concatenate([jnp.broadcast_to(null.astype(dt), (B, 1, D)), ctx], 1)
            ctx_mask = jnp.concatenate([jnp.ones((B, 1), bool), cond["seq_mask"]], 1)  # [B, 1+L]
        S = 0 if ctx is None else ctx.shape[1]
        if cfg.seq_mode == "prepend" and ctx is not None:
            h = jnp.concatenate([ctx, h], axis=1)  # [B, 1+L+T/p, D]
            audio_mask = jnp.ones((B, N), bool) if self_mask is None else self_mask
            self_mask = jnp.concatenate([ctx_mask, audio_mask], 1)  # [B, 1+L+T/p]
            positions = jnp.concatenate([jnp.zeros(S, positions.dtype), positions])
            ctx = ctx_mask = None
        rope = rope_tables(positions, D // cfg.heads)

        block = nn.remat(Block) if cfg.remat else Block
        for i in range(cfg.depth):
            h = block(cfg, name=f"block_{i}")(h, c, ctx, ctx_mask, self_mask, rope)
        if S and cfg.seq_mode == "prepend":
            h = h[:, S:]  # [B, T/p, D]: drop the prepended tokens

        mod = _dense(2 * D, dt, zero=True, name="final_adaln")(nn.silu(c))  # [B, 2D]
        shift, scale = jnp.split(mod, 2, axis=-1)  # [B, D] each
        h = modulate(_norm(dt)(h), shift, scale)
        h = _dense(p * cfg.n_mels, dt, zero=True, name="final_out")(h)  # [B, T/p, p*n_mels]
        out = h.astype(jnp.float32).reshape(B, T, cfg.n_mels)  # [B, T, n_mels]
        out = out.transpose(0, 2, 1)  # [B, n_mels, T]
        if content is not None:
            out = jnp.where(content[:, None, :], out, 0.0)
        assert out.shape == x.shape, (out.shape, x.shape)
        return out


def null_cond(cond: dict | None) -> dict | None:
    """The unconditional version of cond, same shapes: labels -1, vec 0, seq_mask all False."""
    if cond is None:
        return None
    out = dict(cond)
    if "labels" in cond:
        out["labels"] = jnp.full_like(cond["labels"], -1)
    if "vec" in cond:
        out["vec"] = jnp.zeros_like(cond["vec"])
    if "seq" in cond:
        out["seq_mask"] = jnp.zeros(cond["seq"].shape[:2], bool)
    return out


def drop_cond(cond: dict | None, key: jax.Array, p: float | jax.Array, *,
              per_key: bool = False) -> dict | None:
    """Null each example's condition with probability p (classifier-free guidance training).

    per_key=False: one draw per example nulls all its inputs at once, so a fraction p of the
    batch trains the unconditional model. per_key=True: each label column, vec and seq drop
    independently (for guidance on single inputs). p may be traced.
    """
    if isinstance(p, (int, float)) and not 0 <= p <= 1:
        raise ParamError(f"p={p} must be in [0, 1]; 0.1 is usual for CFG training")
    if not cond:
        return cond
    B = next(iter(cond.values())).shape[0]
    k_all, k_lab, k_vec, k_seq = jax.random.split(key, 4)
    whole = jax.random.bernoulli(k_all, p, (B,))

    def draw(k, shape):  # bool[shape] or bool[B, 1], True = drop
        return jax.random.bernoulli(k, p, shape) if per_key else whole[:, None]

    out = dict(cond)
    if "labels" in cond:
        out["labels"] = jnp.where(draw(k_lab, cond["labels"].shape), -1, cond["labels"])
    if "vec" in cond:
        out["vec"] = jnp.where(draw(k_vec, (B, 1)), 0, cond["vec"]).astype(cond["vec"].dtype)
    if "seq" in cond:
        mask = cond.get("seq_mask", jnp.ones(cond["seq"].shape[:2], bool))
        out["seq_mask"] = mask & ~draw(k_seq, (B, 1))
    return out


def count_params(params: Any) -> int:
    """Number of scalars in a params pytree (arrays or jax.ShapeDtypeStruct leaves)."""
    return int(sum(math.prod(leaf.shape) for leaf in jax.tree_util.tree_leaves(params)))


def flops_per_forward(config: DiTConfig, frames: int, batch: int = 1, seq_len: int = 0) -> float:
    """Matmul FLOPs of one forward pass (2*m*n*k per matmul, attention QK^T and AV included).

    Elementwise ops (norms, softmax, GELU) are left out: a few % at real sizes. A training
    step is about 3x this (forward + backward), 4x with remat.
    """
    cfg = config
    if frames % cfg.patch:
        raise ParamError(f"frames={frames} is not a multiple of patch={cfg.patch}; pad frames")
    if seq_len and not cfg.seq_dim:
        raise ParamError(f"seq_len={seq_len} needs seq_dim > 0 in the config; pass seq_len=0")
    B, D, N = batch, cfg.dim, frames // cfg.patch
    hidden, S = int(D * cfg.mlp_ratio), (1 + seq_len if cfg.seq_dim else 0)

    def mm(m, k, n):  # one [m, k] @ [k, n]
        return 2.0 * m * k * n

    f = mm(B * N, cfg.patch * cfg.n_mels, D)  # patch embed
    f += (1 + cfg.interval + cfg.length_cond) * (mm(B, FREQ_DIM, D) + mm(B, D, D))  # t (interval, length) MLPs
    f += mm(B, cfg.vec_dim, D)  # vec projection
    f += mm(B * seq_len, cfg.seq_dim, D) if cfg.seq_dim else 0.0  # seq projection
    Ns = N + S if cfg.seq_mode == "prepend" else N  # tokens in self-attention
    block = mm(B, D, 6 * D)  # adaLN
    block += mm(B * Ns, D, 3 * D) + 2 * mm(B * Ns, D, Ns) + mm(B * Ns, D, D)  # self-attention
    block += mm(B * Ns, D, hidden) + mm(B * Ns, hidden, D)  # MLP
    if cfg.seq_dim and cfg.seq_mode == "cross":
        block += mm(B * N, D, D) + mm(B * S, D, 2 * D) + 2 * mm(B * N, D, S) + mm(B * N, D, D)
    f += cfg.depth * block
    f += mm(B, D, 2 * D) + mm(B * N, D, cfg.patch * cfg.n_mels)  # final adaLN and Dense
    return float(f)
