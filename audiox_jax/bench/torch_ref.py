"""A PyTorch reference of the label-conditioned DiT and of generate, for benchmarks and parity tests.

Optional: needs ``torch`` (``pip install 'audiox-jax[torch]'``). Imported only by the torch rows
of ``audiox-jax bench`` (in a fresh subprocess: ``bench.dsp._torch_worker`` and :func:`_worker`)
and by ``tests/test_torch_ref.py``; ``import audiox_jax`` and ``import audiox_jax.bench`` never
import it. Two things live here:

* :class:`TorchDiT`, the same maths as ``models.dit.DiT`` for label conditioning (patchify
  along time, rotary q/k in rotate-half layout, sinusoidal timestep features -> MLP, label
  embeddings with a null row, adaLN-Zero blocks, final adaLN + Dense, unpatchify), attention
  through ``torch.nn.functional.scaled_dot_product_attention``; :func:`load_flax_params`
  copies our Flax params pytree into it.
* :func:`torch_generate`, the seed's style of generation: a Python loop of Euler steps in VE
  sigma space on the "karras" schedule of the "rf" formulation, classifier-free guidance in
  x0 space with one batched forward (cond + uncond) per step, then denormalise, clip like
  ``pipeline.clip_log_mel``, FISTA NNLS mel inversion (as ``audio.mel.mel_to_linear``) and fast
  Griffin-Lim (as ``audio.griffin_lim``, "fast" method), all in torch.

Timing: :func:`bench_torch_generate` (run it through :func:`subprocess_rows`, or ``_worker``
in a fresh process: torch runs ~10x slower in a process where XLA's CPU thread pool has run).
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch
import torch.nn.functional as F
from flax import serialization
from torch import nn

from audiox_jax import modelio
from audiox_jax.audio import MelStats
from audiox_jax.bench.harness import row, spread
from audiox_jax.config import from_dict
from audiox_jax.diffusion.formulations import X0_CLIP
from audiox_jax.modelio import resolve_model
from audiox_jax.models.dit import FREQ_DIM, DiTConfig

_TORCH_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


# ---------------------------------------------------------------------- model


def timestep_features(t: torch.Tensor, dim: int = FREQ_DIM, max_period: float = 1e4) -> torch.Tensor:
    """f32[B] (already scaled) -> f32[B, dim]: [cos, sin], as ``dit.timestep_features``."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t.float()[:, None] * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


def rope_tables(n: int, head_dim: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """(cos, sin) f32[n, head_dim/2] for positions 0..n-1, base 10000."""
    half = head_dim // 2
    inv_freq = 1.0 / (1e4 ** (torch.arange(half, dtype=torch.float32, device=device) / half))
    angles = torch.arange(n, dtype=torch.float32, device=device)[:, None] * inv_freq[None]
    return torch.cos(angles), torch.sin(angles)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x [B, H, N, hd] rotated by position (rotate-half layout); cos, sin [N, hd/2]."""
    x1, x2 = x.float().chunk(2, dim=-1)
    return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1).to(x.dtype)


def _modulate(x, shift, scale):
    return x * (1 + scale[:, None]) + shift[:, None]


def _norm(x):
    return F.layer_norm(x, x.shape[-1:], eps=1e-6)


class TorchBlock(nn.Module):
    """adaLN-Zero block (self-attention + MLP), as ``dit.Block`` without cross-attention."""

    def __init__(self, dim: int, heads: int, hidden: int):
        super().__init__()
        self.heads = heads
        self.adaln = nn.Linear(dim, 6 * dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)
        self.mlp_in = nn.Linear(dim, hidden)
        self.mlp_out = nn.Linear(hidden, dim)

    def forward(self, x, c_act, rope, key_mask=None):
        """key_mask: bool[B, N] (True = attend to that token) or None."""
        B, N, D = x.shape
        shift1, scale1, gate1, shift2, scale2, gate2 = self.adaln(c_act).chunk(6, dim=-1)
        h = _modulate(_norm(x), shift1, scale1)
        qkv = self.qkv(h).reshape(B, N, 3, self.heads, D // self.heads).permute(2, 0, 3, 1, 4)  # [3, B, H, N, hd]
        q, k, v = apply_rope(qkv[0], *rope), apply_rope(qkv[1], *rope), qkv[2]
        mask = None if key_mask is None else key_mask[:, None, None, :]  # [B, 1, 1, N]
        a = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)  # [B, H, N, hd]
        x = x + gate1[:, None] * self.out(a.transpose(1, 2).reshape(B, N, D))
        h = _modulate(_norm(x), shift2, scale2)
        return x + gate2[:, None] * self.mlp_out(F.gelu(self.mlp_in(h), approximate="tanh"))


class TorchDiT(nn.Module):
    """``models.dit.DiT`` for label (and length) conditioning: ``forward(x f32[B, n_mels, T], t f32[B],
    labels int[B, n_labels] (-1 = null), length f32[B] frames) -> f32[B, n_mels, T]``. Load weights with
    :func:`load_flax_params`. Labels outside [-1, num_classes) give NaN rows, as in Flax."""

    def __init__(self, config: DiTConfig):
        super().__init__()
        if config.vec_dim or config.seq_dim:
            raise NotImplementedError(f"TorchDiT supports label conditioning only; got vec_dim={config.vec_dim}, "
                                      f"seq_dim={config.seq_dim}")
        self.config = config
        D, p = config.dim, config.patch
        self.patch_embed = nn.Linear(p * config.n_mels, D)
        self.t_mlp_in = nn.Linear(FREQ_DIM, D)
        self.t_mlp_out = nn.Linear(D, D)
        self.label_tables = nn.ModuleList(nn.Embedding(n + 1, D) for _, n in config.labels)  # row n = null
        if config.length_cond:
            self.len_mlp_in = nn.Linear(FREQ_DIM, D)
            self.len_mlp_out = nn.Linear(D, D)
        self.blocks = nn.ModuleList(TorchBlock(D, config.heads, int(D * config.mlp_ratio)) for _ in range(config.depth))
        self.final_adaln = nn.Linear(D, 2 * D)
        self.final_out = nn.Linear(D, p * config.n_mels)
        self.to(_TORCH_DTYPES[config.dtype])

    def forward(self, x: torch.Tensor, t: torch.Tensor, labels: torch.Tensor | None = None,
                length: torch.Tensor | None = None) -> torch.Tensor:
        cfg = self.config
        B, n_mels, T = x.shape
        if n_mels != cfg.n_mels or T % cfg.patch:
            raise ValueError(f"x.shape={tuple(x.shape)} must be [B, {cfg.n_mels}, a multiple of {cfg.patch}]")
        dt = self.patch_embed.weight.dtype
        N, D = T // cfg.patch, cfg.dim
        content = None
        if cfg.length_cond:  # as dit.DiT: padding zeroed at the input and output, masked as attention keys
            length = torch.full((B,), float(T), device=x.device) if length is None else length.float()
            length = length.clamp(1.0, float(T))
            content = torch.arange(T, device=x.device)[None, :] < length[:, None]  # [B, T]
            x = torch.where(content[:, None, :], x, torch.zeros_like(x))
        h = self.patch_embed(x.to(dt).transpose(1, 2).reshape(B, N, cfg.patch * n_mels))  # [B, N, D]
        c = timestep_features(t.float() * cfg.time_scale).to(dt)
        c = self.t_mlp_out(F.silu(self.t_mlp_in(c)))  # [B, D]
        if labels is None:
            labels = torch.full((B, len(cfg.labels)), -1, dtype=torch.long, device=x.device)
        for i, ((_, n), table) in enumerate(zip(cfg.labels, self.label_tables)):
            lab = labels[:, i].long()
            bad = (lab < -1) | (lab >= n)
            idx = torch.where(lab == -1, torch.full_like(lab, n), lab.clamp(0, n))
            emb = table(idx)
            c = c + torch.where(bad[:, None], torch.full_like(emb, float("nan")), emb)
        if content is not None:
            c = c + self.len_mlp_out(F.silu(self.len_mlp_in(timestep_features(length).to(dt))))
        rope = rope_tables(N, D // cfg.heads, x.device)
        c_act = F.silu(c)
        key_mask = None if content is None else content[:, :: cfg.patch]
        for block in self.blocks:
            h = block(h, c_act, rope, key_mask)
        shift, scale = self.final_adaln(c_act).chunk(2, dim=-1)
        h = self.final_out(_modulate(_norm(h), shift, scale))  # [B, N, p * n_mels]
        out = h.float().reshape(B, T, n_mels).transpose(1, 2)  # [B, n_mels, T]
        return out if content is None else torch.where(content[:, None, :], out, torch.zeros_like(out))


def load_flax_params(module: TorchDiT, params) -> TorchDiT:
    """Copy a ``DiT`` params pytree (Flax names, arrays of any kind) into ``module``; returns it.

    Dense kernel [in, out] -> Linear weight [out, in], bias as is; Embed embedding -> weight.
    Every Flax leaf must be used and every torch parameter set (else ValueError).
    """
    flat = {}

    def walk(tree, prefix):
        for k, v in tree.items():
            if isinstance(v, dict) or hasattr(v, "items"):
                walk(v, prefix + (k,))
            else:
                flat[prefix + (k,)] = np.asarray(v, np.float32)

    walk(params, ())
    mapping = {"patch_embed": ("patch_embed",), "t_mlp_in": ("t_mlp_in",), "t_mlp_out": ("t_mlp_out",),
               "final_adaln": ("final_adaln",), "final_out": ("final_out",)}
    if module.config.length_cond:
        mapping.update({"len_mlp_in": ("len_mlp_in",), "len_mlp_out": ("len_mlp_out",)})
    for i in range(module.config.depth):
        for name in ("adaln", "mlp_in", "mlp_out"):
            mapping[f"blocks.{i}.{name}"] = (f"block_{i}", name)
        mapping[f"blocks.{i}.qkv"] = (f"block_{i}", "attn", "qkv")
        mapping[f"blocks.{i}.out"] = (f"block_{i}", "attn", "out")
    used, state = set(), {}
    for tname, fpath in mapping.items():
        state[f"{tname}.weight"] = flat[fpath + ("kernel",)].T
        state[f"{tname}.bias"] = flat[fpath + ("bias",)]
        used |= {fpath + ("kernel",), fpath + ("bias",)}
    for i, (name, _) in enumerate(module.config.labels):
        key = (f"label_{name}", "embedding")
        state[f"label_tables.{i}.weight"] = flat[key]
        used.add(key)
    unused = sorted(set(flat) - used)
    if unused:
        raise ValueError(f"flax params {unused[:4]} have no place in TorchDiT (vec/seq/cross weights are unsupported)")
    own = module.state_dict()
    if set(own) != set(state):
        raise ValueError(f"param names differ: {sorted(set(own) ^ set(state))[:4]}")
    with torch.no_grad():
        for k, v in state.items():
            if tuple(own[k].shape) != v.shape:
                raise ValueError(f"{k}: torch shape {tuple(own[k].shape)} vs flax {v.shape}")
            own[k].copy_(torch.tensor(v))
    return module


# ---------------------------------------------------------------------- sampler and vocoder


def karras_sigmas(steps: int, sigma_min: float, sigma_max: float, rho: float = 7.0) -> np.ndarray:
    """f32[steps + 1], as ``schedules.sigmas("karras", ...)``: sigma_max .. sigma_min, then 0."""
    ramp = np.linspace(0.0, 1.0, steps, dtype=np.float32)
    hi, lo = np.float32(sigma_max), np.float32(sigma_min)
    a, b = hi ** np.float32(1.0 / rho), lo ** np.float32(1.0 / rho)
    s = ((a + ramp * (b - a)) ** np.float32(rho)).astype(np.float32)
    s[0] = hi
    if steps > 1:
        s[-1] = lo
    return np.concatenate([s, np.zeros(1, np.float32)])


def denormalize(z: torch.Tensor, stats) -> torch.Tensor:
    """Model space -> log-mel, as ``pipeline.to_log_mel`` (``range`` stats clip z to [-1, 1] first)."""
    if stats.kind == "range":
        z = z.clamp(-1.0, 1.0)
        return (z + 1.0) * 0.5 * (stats.hi - stats.lo) + stats.lo
    mean = torch.as_tensor(np.asarray(stats.mean, np.float32), device=z.device)[:, None]
    std = torch.as_tensor(np.asarray(stats.std, np.float32), device=z.device)[:, None]
    return z * std + mean


def clip_log_mel(log_mel: torch.Tensor, audio_cfg) -> torch.Tensor:
    """As ``pipeline.clip_log_mel``: clip to [log floor, log 1e6]."""
    to_log = np.log if audio_cfg.log == "ln" else (lambda v: 10.0 * np.log10(v))
    return log_mel.clamp(float(to_log(audio_cfg.floor)), float(to_log(1e6)))


_NNLS_CACHE: dict = {}


def _nnls_constants(mel_basis: np.ndarray):
    """(M f32, pinv(M) f32, 1 / ||M||_2^2), computed once per filterbank (JAX does it at trace time)."""
    M64 = np.asarray(mel_basis, np.float64)
    key = (M64.shape, hash(M64.tobytes()))
    if key not in _NNLS_CACHE:
        _NNLS_CACHE[key] = (torch.tensor(M64.astype(np.float32)), torch.tensor(np.linalg.pinv(M64).astype(np.float32)),
                            float(1.0 / np.linalg.norm(M64, 2) ** 2))
    return _NNLS_CACHE[key]


def mel_to_linear(mel: torch.Tensor, mel_basis: np.ndarray, *, n_iter: int = 32, power: float = 2.0) -> torch.Tensor:
    """FISTA NNLS, as ``audio.mel.mel_to_linear``: mel f32[B, n_mels, frames] -> |S| f32[B, bins, frames]."""
    M, pinv, step = _nnls_constants(mel_basis)
    M, pinv = M.to(mel.device), pinv.to(mel.device)
    Mt = M.T.contiguous()
    mel = mel.float()
    p = torch.clamp(pinv @ mel, min=0.0)
    y, t = p, 1.0
    for _ in range(n_iter):
        p_next = torch.clamp(y - step * (Mt @ (M @ y - mel)), min=0.0)
        t_next = 0.5 * (1.0 + math.sqrt(1.0 + 4.0 * t * t))
        y = p_next + ((t - 1.0) / t_next) * (p_next - p)
        p, t = p_next, t_next
    return p if power == 1.0 else p.pow(1.0 / power)


def griffin_lim(S: torch.Tensor, phase: torch.Tensor, *, n_fft: int, hop_length: int, win_length: int | None,
                n_iter: int, momentum: float, length: int) -> torch.Tensor:
    """Fast Griffin-Lim (librosa's, as ``audio.griffin_lim(method="fast")``) with torch.stft/istft.

    S: f32[B, bins, frames] magnitude; phase: f32[B, bins, frames] initial phase in radians.
    """
    win = torch.hann_window(win_length or n_fft, periodic=True, device=S.device)
    kw = dict(n_fft=n_fft, hop_length=hop_length, win_length=win_length or n_fft, window=win, center=True)
    angles = torch.polar(torch.ones_like(S), phase.to(S.dtype))
    prev = torch.zeros_like(angles)
    coef = momentum / (1.0 + momentum)
    tiny = float(np.finfo(np.float32).tiny)
    for _ in range(n_iter):
        y = torch.istft(S * angles, length=length, **kw)
        rebuilt = torch.stft(y, pad_mode="constant", return_complex=True, **kw)
        angles = rebuilt - coef * prev
        angles = angles * torch.rsqrt(angles.real.square() + angles.imag.square() + tiny)
        prev = rebuilt
    return torch.istft(S * angles, length=length, **kw)


def euler_loop(module: TorchDiT, x: torch.Tensor, labels: torch.Tensor, sigmas, cfg: float | None, *,
               prediction: str = "v", length: float | None = None) -> torch.Tensor:
    """Euler steps in VE sigma from x (at sigmas[0]) to sigmas[-1] with the rf denoiser
    ``x0 = x_t + (1 - t) v(x_t, t)``, t = 1 / (1 + sigma), x_t = t z, and CFG in x0 space
    (``x0_c + (w - 1)(x0_c - x0_u)``, one batched cond + uncond forward) unless cfg is None.
    prediction "x0": the network's output is x0 (v = (out - x_t) / max(1 - t, 0.05), as
    ``formulations.x0_prediction``). length: content frames of a length-conditioned model."""
    B, device = x.shape[0], x.device
    both = torch.cat([labels, torch.full_like(labels, -1)]) if cfg is not None else labels
    n = both.shape[0]
    lengths = None if length is None else torch.full((n,), float(length), device=device)

    def x0_of(x_t, t):
        out = module(x_t, torch.full((x_t.shape[0],), t, device=device), both, lengths)
        v = out if prediction == "v" else (out - x_t) / max(1.0 - t, X0_CLIP)
        return x_t + (1.0 - t) * v

    for sigma, sigma_next in zip(sigmas[:-1], sigmas[1:]):
        t = 1.0 / (1.0 + sigma)
        x_t = x * t
        if cfg is None:
            x0 = x0_of(x_t, t)
        else:
            x0_2 = x0_of(torch.cat([x_t, x_t]), t)
            x0_c, x0_u = x0_2[:B], x0_2[B:]
            x0 = x0_c + (cfg - 1.0) * (x0_c - x0_u)
        x = x0 + (sigma_next / sigma) * (x - x0)
    return x


def _loop_options(config, frames: int) -> dict:
    """euler_loop's prediction and length for a model config (length: all ``frames``, as generate's default)."""
    return {"prediction": config.diffusion.prediction, "length": frames if config.model.length_cond else None}


def vocode(log_mel: torch.Tensor, phase: torch.Tensor, config, *, length: int, gla_iters: int | None = None,
           nnls_iters: int | None = None) -> torch.Tensor:
    """Clipped log-mel f32[B, n_mels, frames] -> audio f32[B, length]: exp, FISTA NNLS, fast GLA."""
    ac = config.audio
    mel = torch.exp(log_mel) if ac.log == "ln" else torch.pow(10.0, log_mel / 10.0)
    S = mel_to_linear(mel, ac.mel_basis, n_iter=ac.nnls_iters if nnls_iters is None else nnls_iters, power=ac.power)
    return griffin_lim(S, phase, n_fft=ac.n_fft, hop_length=ac.hop_length, win_length=ac.win_length,
                       n_iter=ac.gla_iters if gla_iters is None else gla_iters, momentum=ac.gla_momentum, length=length)


def _shapes(config, seconds: float) -> tuple[int, int, int]:
    samples = int(round(seconds * config.audio.sr))
    frames = config.audio.frames(samples)
    patch = config.model.patch
    return samples, frames, -(-frames // patch) * patch


def torch_generate(module: TorchDiT, config, stats, labels, *, seconds: float, steps: int, cfg: float | None = 3.0,
                   seed: int = 0, device=None, x_init=None, init_phase=None, gla_iters: int | None = None,
                   nnls_iters: int | None = None, return_log_mel: bool = False):
    """Generate audio with ``module`` the seed's way: a Python loop of Euler steps, then the vocoder.

    Args:
      module: a TorchDiT with weights loaded (on ``device``). config: the model's Config
        (formulation "rf", schedule from ``config.sampling``: only "karras"). stats: its MelStats.
      labels: int[B, n_labels] (numpy or torch), -1 = null.
      seconds, steps: output length and number of Euler steps. cfg: guidance scale w (x0 space,
        one batched cond + uncond forward per step); None = no guidance, one forward per step.
      seed: torch.Generator seed for the initial noise and the Griffin-Lim initial phase.
      device: torch device (None: the module's). x_init: f32[B, n_mels, model_frames] initial
        x (already scaled by sigma_max), overriding the seeded noise. init_phase: f32[B, bins,
        frames] Griffin-Lim initial phase, overriding the seeded one.
      gla_iters, nnls_iters: vocoder iterations; None = config.audio's.
      return_log_mel: also return the clipped, denormalised log-mel f32[B, n_mels, frames].
    Returns:
      audio numpy f32[B, samples] (and the log-mel as numpy when ``return_log_mel``).
    """
    form = config.diffusion.make_formulation()
    sc, ac = config.sampling, config.audio
    if form.name != "rf":
        raise NotImplementedError(f"torch_generate supports the rf formulation only, not {form.name!r}")
    if sc.schedule != "karras":
        raise NotImplementedError(f"torch_generate supports the karras schedule only, not {sc.schedule!r}")
    if ac.gla_method != "fast":
        raise NotImplementedError(f"torch_generate supports gla_method='fast' only, not {ac.gla_method!r}")
    device = torch.device(device) if device is not None else next(module.parameters()).device
    samples, frames, model_frames = _shapes(config, seconds)
    labels = torch.tensor(np.asarray(labels), dtype=torch.long, device=device)
    B = labels.shape[0]
    sig = [float(s) for s in karras_sigmas(steps, form.sigma_min, form.sigma_max, sc.rho)]
    gen = torch.Generator(device=device).manual_seed(int(seed))
    if x_init is None:
        x = sig[0] * torch.randn((B, config.model.n_mels, model_frames), generator=gen, device=device)
    else:
        x = torch.tensor(np.asarray(x_init, np.float32), device=device)
    bins = ac.n_fft // 2 + 1
    if init_phase is None:
        phase = 2 * math.pi * torch.rand((B, bins, frames), generator=gen, device=device)
    else:
        phase = torch.tensor(np.asarray(init_phase, np.float32), device=device)

    x = euler_loop(module, x, labels, sig, cfg, **_loop_options(config, frames))
    log_mel = clip_log_mel(denormalize(x[..., :frames], stats), ac)
    audio = vocode(log_mel, phase, config, length=samples, gla_iters=gla_iters, nnls_iters=nnls_iters)
    audio = audio.float().cpu().numpy()
    return (audio, log_mel.float().cpu().numpy()) if return_log_mel else audio


# ---------------------------------------------------------------------- benchmark


def _sync(device):
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def _time(fn, device, *, repeats: int, warmup: int) -> dict:
    for _ in range(warmup):
        fn()
        _sync(device)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - t0)
    return spread(times)


def bench_torch_generate(seconds: float = 10.0, steps: int = 8, repeats: int = 3, *, cfg: float = 3.0,
                         batch: int = 1, warmup: int = 1, threads: int | None = None) -> list[dict]:
    """Time torch_generate with the shipped default model (CUDA if available, else CPU).

    torch_generate is called under ``torch.inference_mode()``; ``warmup`` untimed calls, then
    the median, min and max of ``repeats`` timed calls (CUDA synchronised).

    Rows, in ``bench.harness.row``'s format: the full torch_generate (noise, Euler loop, vocoder, copy
    to numpy), the Euler loop alone, and the vocoder alone on that loop's log-mel. Run it in a fresh process (see :func:`subprocess_rows`).
    """
    if threads:
        torch.set_num_threads(int(threads))  # CPU intra-op threads; None keeps torch's default
    config, stats, params = load_default_numpy()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    module = load_flax_params(TorchDiT(config.model), params).to(device).eval()
    labels = np.zeros((batch, len(config.model.labels)), np.int64)
    kw = dict(seconds=seconds, steps=steps, cfg=cfg, seed=0, device=device)
    tag = f"torch {torch.__version__} {device}" + ("" if device == "cuda" else f" {torch.get_num_threads()}thr")
    rows = []
    with torch.inference_mode():
        t = _time(lambda: torch_generate(module, config, stats, labels, **kw), device, repeats=repeats, warmup=warmup)
        rows.append(row(f"torch generate euler {steps}st {seconds:g}s b{batch} (cfg, default model, {tag})", t,
                         audio_s=seconds * batch))
        # where the time goes: the Euler loop alone, and the vocoder alone on the loop's own log-mel
        form = config.diffusion.make_formulation()
        sig = [float(v) for v in karras_sigmas(steps, form.sigma_min, form.sigma_max, config.sampling.rho)]
        lab = torch.tensor(labels, device=device)
        samples, frames, model_frames = _shapes(config, seconds)
        gen = torch.Generator(device=device).manual_seed(0)
        x_init = sig[0] * torch.randn((batch, config.model.n_mels, model_frames), generator=gen, device=device)
        opts = _loop_options(config, frames)
        t = _time(lambda: euler_loop(module, x_init, lab, sig, cfg, **opts), device, repeats=repeats, warmup=warmup)
        rows.append(row(f"torch euler loop only {steps}st {seconds:g}s b{batch} (cfg, {tag})", t,
                         audio_s=seconds * batch))
        lm = clip_log_mel(denormalize(euler_loop(module, x_init, lab, sig, cfg, **opts)[..., :frames], stats), config.audio)
        phase = 2 * math.pi * torch.rand((batch, config.audio.n_fft // 2 + 1, frames), generator=gen, device=device)
        t = _time(lambda: vocode(lm, phase, config, length=samples), device, repeats=repeats, warmup=warmup)
        rows.append(row(f"torch vocoder only (nnls {config.audio.nnls_iters} + gla {config.audio.gla_iters}) "
                         f"{seconds:g}s ({tag})", t, audio_s=seconds * batch))
    return rows


def load_default_numpy(model: str = "default"):
    """``(config, stats, params)`` of a shipped model, params as numpy: the same folder and files as
    ``generator.load_pipeline(model).model``, but without ``jnp.asarray``, so the XLA CPU client
    never starts in this process (once it has, torch on CPU runs several times slower and far
    noisier; measured on a 2-core box). Shapes are checked by :func:`load_flax_params`."""
    path = resolve_model(model)
    with open(os.path.join(path, modelio.MODEL), encoding="utf-8") as f:
        meta = json.load(f)
    if meta.get("format") != modelio.FORMAT:
        raise ValueError(f"{path}: model format {meta.get('format')!r}, this audiox-jax reads {modelio.FORMAT}")
    with open(os.path.join(path, modelio.PARAMS), "rb") as f:
        params = _to_numpy(serialization.msgpack_restore(f.read()))
    return from_dict(meta["config"]), MelStats.from_dict(meta["stats"]), params


def _to_numpy(tree):
    return {k: _to_numpy(v) if hasattr(v, "items") else np.asarray(v, np.float32) for k, v in tree.items()}


def _worker(path: str) -> None:
    """Subprocess entry: read kwargs for :func:`bench_torch_generate` from JSON at ``path``,
    write ``{"rows": [...]}`` as JSON to ``path + ".out.json"``."""
    with open(path) as f:
        kwargs = json.load(f)
    rows = bench_torch_generate(**kwargs)
    with open(path + ".out.json", "w") as f:
        json.dump({"rows": rows}, f)


def subprocess_rows(seconds: float = 10.0, steps: int = 8, repeats: int = 3, threads: int | None = None,
                    timeout: float = 600) -> list[dict]:
    """Run :func:`bench_torch_generate` in a fresh Python process and return its rows."""
    with tempfile.TemporaryDirectory() as tmp:
        path = f"{tmp}/args.json"
        with open(path, "w") as f:
            json.dump({"seconds": seconds, "steps": steps, "repeats": repeats, "threads": threads}, f)
        code = "import sys; from audiox_jax.bench.torch_ref import _worker; _worker(sys.argv[1])"
        subprocess.run([sys.executable, "-c", code, path], check=True, timeout=timeout)
        with open(path + ".out.json") as f:
            return json.load(f)["rows"]
