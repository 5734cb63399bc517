"""generate(): noise -> sampler -> denormalised log-mel -> mel inversion -> Griffin-Lim -> waveform.

The whole path is one jitted XLA program: the sampler is one ``lax.scan`` (see
``diffusion.samplers``), mel inversion one ``fori_loop`` and Griffin-Lim one ``lax.scan``;
nothing returns to the host in between. It is compiled once per (shapes, sampler,
steps, schedule); guidance scale, its rescale, eta, strength, seeds and conditioning are
traced values, so a batch of different guidance scales or seeds is one call (or a vmap).

Three layers, nothing reaching past one: this module (keys, conditioning, guidance,
audio in and out) -> ``diffusion.samplers`` (solvers sharing one signature) -> the model.

Randomness: ``key`` is split into one key per sample, ``fold_in(key, b)``; the sampler
noise, the initial noise and the Griffin-Lim initial phase of sample b all come from
that key, so a sample does not depend on the batch size or its place in the batch.
"""

from __future__ import annotations

from typing import NamedTuple, Optional

import numpy as np
import jax
import jax.numpy as jnp

from audiox_jax.audio import frontend
from audiox_jax.audio.stft import stft
from audiox_jax.audio.mel import MelStats, denormalize, normalize
from audiox_jax.config import Config
from audiox_jax.diffusion import guidance, samplers, schedules
from audiox_jax.errors import ParamError
from audiox_jax.models.dit import DiT, frame_mask, null_cond

_GLA_STREAM = 3  # per-sample key stream for the Griffin-Lim initial phase (samplers use 0-2)


class Generated(NamedTuple):
    """audio: f32[B, samples] in [-1, 1]-ish; log_mel: f32[B, n_mels, frames] (denormalised);
    trajectory_x, trajectory_x0: f32[steps, B, n_mels, model_frames] in model space, or None."""

    audio: jax.Array
    log_mel: jax.Array
    trajectory_x: Optional[jax.Array] = None
    trajectory_x0: Optional[jax.Array] = None


def shapes(config: Config, seconds: float) -> tuple[int, int, int]:
    """``(samples, frames, model_frames)`` for ``seconds`` of audio.

    frames = 1 + samples // hop (the log-mel of that many samples); the model runs on
    frames rounded up to a multiple of the DiT patch, and the extra frames are dropped.
    """
    if not seconds > 0:
        raise ParamError(f"seconds={seconds} must be > 0")
    samples = int(round(seconds * config.audio.sr))
    frames = config.audio.frames(samples)
    patch = config.model.patch
    if frames < patch:
        raise ParamError(
            f"seconds={seconds} gives {frames} mel frames, fewer than one DiT patch ({patch} frames); "
            f"ask for at least {patch * config.audio.hop_length / config.audio.sr:.3f} s"
        )
    return samples, frames, -(-frames // patch) * patch


def sample_keys(key: jax.Array, batch: int) -> jax.Array:
    """One key per sample: key[B] = fold_in(key, b)."""
    return jax.vmap(lambda b: jax.random.fold_in(key, b))(jnp.arange(batch))


def denoiser(params, config: Config, cond: dict | None):
    """The formulation's denoiser ``D(z: f32[B, n_mels, T], sigma: f32[B]) -> x0_hat`` for a DiT
    (few-step models also take ``sigma_next: f32[B]``, see `diffusion.fewstep`)."""
    model = DiT(config.model)
    model_fn = lambda x, t, *h: model.apply({"params": params}, x, t, cond, *h)  # noqa: E731
    return config.diffusion.make_formulation().denoiser(config.diffusion.velocity_fn(model_fn))


def check_sampler(config: Config, sampler: str) -> None:
    """The "fewstep" sampler needs a few-step model (rf, ``model.interval``); say so by name."""
    if sampler == "fewstep" and not (config.model.interval and config.diffusion.formulation == "rf"):
        raise ParamError("sampler='fewstep' needs a few-step model (trained with diffusion.objective "
                         "shortcut or meanflow, e.g. --model fast); use sampler='euler' for this one")


def _stack_cond(a: dict, b: dict) -> dict:
    return jax.tree.map(lambda u, v: jnp.concatenate([u, v]), a, b)


def _cond_batch(cond: dict | None, batch: int | None) -> int:
    sizes = {int(v.shape[0]) for v in jax.tree.leaves(cond)} if cond else set()
    if batch is not None:
        sizes.add(int(batch))
    if len(sizes) != 1:
        raise ParamError(
            f"batch size is ambiguous: cond arrays and batch= give {sorted(sizes) or 'nothing'}; "
            "pass batch=N for unconditional generation, or conditioning arrays with one shared leading size"
        )
    return sizes.pop()


def _pad_frames(x: jax.Array, model_frames: int, value: float = 0.0) -> jax.Array:
    pad = model_frames - x.shape[-1]
    return jnp.pad(x, [(0, 0)] * (x.ndim - 1) + [(0, pad)], constant_values=value) if pad > 0 else x[..., :model_frames]


def audio_to_model_space(audio: jax.Array, config: Config, stats: MelStats, model_frames: int) -> jax.Array:
    """f32[B, n] waveform -> normalised log-mel f32[B, n_mels, model_frames] (zero-padded in time)."""
    return _pad_frames(normalize(frontend.log_mel(audio, config.audio), stats), model_frames)


def silence_log_mel(stats: MelStats, audio_cfg) -> float:
    """The log-mel value of silence: the normaliser's floor (``range`` stats: its ``lo``), else the log floor."""
    to_log = np.log if audio_cfg.log == "ln" else (lambda v: 10.0 * np.log10(v))
    return float(stats.lo) if stats.kind == "range" else float(to_log(audio_cfg.floor))


def to_log_mel(z: jax.Array, stats: MelStats, audio_cfg, length: jax.Array | None = None) -> jax.Array:
    """Model space f32[B, n_mels, frames] -> log-mel, bounded to what training saw.

    ``range`` stats (a fixed dynamic range): z is clipped to [-1, 1] first, so no frame is
    louder than the loudest training frame or quieter than its floor. ``length`` f32[B]
    (length-conditioned models): frames at or past it are set to silence.
    """
    if stats.kind == "range":
        z = jnp.clip(z, -1.0, 1.0)
    log_mel = clip_log_mel(denormalize(z, stats), audio_cfg)
    if length is not None:
        log_mel = jnp.where(frame_mask(length, z.shape[-1])[:, None, :], log_mel, silence_log_mel(stats, audio_cfg))
    return log_mel


def clip_log_mel(log_mel: jax.Array, audio_cfg) -> jax.Array:
    """Clip log-mel to [log floor, log 1e6]: mel power of real audio stays far below 1e6
    (a full-scale sine peaks near 1e3 with Slaney filters), so a trained model is untouched
    while an untrained or diverged one cannot overflow the vocoder's exp into inf/NaN."""
    to_log = np.log if audio_cfg.log == "ln" else (lambda v: 10.0 * np.log10(v))
    return jnp.clip(log_mel, float(to_log(audio_cfg.floor)), float(to_log(1e6)))


def continuation_mask(init_samples: int, config: Config, model_frames: int, *, margin_frames: int = 2) -> np.ndarray:
    """f32[model_frames]: 1 over the frames fully covered by the first ``init_samples`` samples.

    The last ``margin_frames`` frames of the known audio are left free so the model can
    smooth the join (their analysis window runs past the known audio anyway).
    """
    hop, half = config.audio.hop_length, config.audio.n_fft // 2
    covered = max(0, (init_samples - half) // hop + 1 - margin_frames)
    mask = np.zeros(model_frames, np.float32)
    mask[: min(covered, model_frames)] = 1.0
    return mask


def generate(
    params,
    key: jax.Array,
    cond: dict | None = None,
    *,
    config: Config,
    stats: MelStats,
    seconds: float,
    batch: int | None = None,
    sampler: str | None = None,
    steps: int | None = None,
    schedule: str | None = None,
    cfg=None,
    cfg_rescale=0.0,
    cfg_interval=(0.0, float("inf")),
    neg_cond: dict | None = None,
    eta=None,
    init_audio: jax.Array | None = None,
    mask: jax.Array | None = None,
    strength=None,
    gla_iters: int | None = None,
    nnls_iters: int | None = None,
    return_trajectory: bool = False,
    vocode: bool = True,
) -> Generated:
    """Generate ``seconds`` of audio per sample; jit it with :func:`generate_jit`.

    Args:
      params: the DiT's params pytree (usually the EMA params).
      key: one ``jax.random`` key; sample b uses ``fold_in(key, b)``.
      cond: DiT conditioning dict ({"labels": i32[B, n_labels], "vec": ..., "seq": ...}),
        label -1 = unconditional for that label; None = unconditional (give ``batch``).
        Length-conditioned models (``model.length_cond``) also take "length": f32[B], the sound's
        length in frames (missing = all of ``seconds``); the frames after it are silence.
      config, stats: the model's Config (audio, model, diffusion, sampling defaults) and
        log-mel normaliser. Static.
      seconds: output length in seconds (static).
      sampler, steps, schedule: see ``diffusion.samplers.SAMPLERS`` and
        ``diffusion.schedules.SCHEDULES``; None = ``config.sampling``. Static.
      cfg: classifier-free guidance scale w (traced; [] or f32[B]); None = no guidance and
        one network call per step instead of a doubled batch. 1 = conditional only.
      cfg_rescale: guidance rescale phi in [0, 1] (traced). cfg_interval: (lo, hi) in VE sigma.
      neg_cond: conditioning to guide away from (replaces the unconditional branch).
      eta: "ddim"/"dpmpp_2m_sde" stochasticity (traced); None = sampler default.
      init_audio: f32[B, n] audio for audio-to-audio (n <= samples; zero-padded):
        with ``mask`` -> inpainting/continuation (Griffin-Lim then starts from the input's
        own phase in the kept frames, so they come back phase-coherent with it), with
        ``strength`` -> variation.
      mask: f32[B, model_frames] or f32[model_frames], 1 = keep ``init_audio`` there.
      strength: variation strength in [0, 1] (traced): 1 = from pure noise.
      gla_iters, nnls_iters: vocoder iterations (static); None = config.sampling.
      return_trajectory: also return x and x0 after every step (static).
      vocode: False stops at the log-mel (``audio`` is None): the model's share of the time (static).
    Returns:
      :class:`Generated` with audio f32[B, samples], samples = round(seconds * sr).
    """
    sc = config.sampling
    sampler = sc.sampler if sampler is None else sampler
    steps = sc.steps if steps is None else steps
    schedule = sc.schedule if schedule is None else schedule
    check_sampler(config, sampler)
    samples, frames, model_frames = shapes(config, seconds)
    B = _cond_batch(cond, batch)
    n_mels = config.model.n_mels
    if n_mels != config.audio.n_mels:
        raise ParamError(f"model.n_mels={n_mels} differs from audio.n_mels={config.audio.n_mels}; make them equal")
    if (mask is not None or strength is not None) and init_audio is None:
        raise ParamError("mask= and strength= need init_audio= (the audio to inpaint, continue or vary)")
    if init_audio is not None and mask is None and strength is None:
        raise ParamError("init_audio= needs mask= (inpainting/continuation) or strength= (variation)")

    length = None
    if config.model.length_cond:
        cond = dict(cond or {})
        length = jnp.minimum(jnp.asarray(cond.get("length", jnp.full((B,), frames, jnp.float32)), jnp.float32), frames)
        cond["length"] = length
        if neg_cond is not None:
            neg_cond = {**neg_cond, "length": length}

    form = config.diffusion.make_formulation()
    keys = sample_keys(key, B)
    sigmas = schedules.sigmas(schedule, steps, sigma_min=form.sigma_min, sigma_max=form.sigma_max,
                              rho=sc.rho, shift=sc.shift, formulation=form)

    # Denoiser, with classifier-free guidance as one batched call for both branches.
    if cfg is None:
        denoise = denoiser(params, config, cond)
    else:
        uncond = null_cond(cond) if neg_cond is None else neg_cond
        if uncond is None:  # unconditional model: both branches are the same network call
            uncond = cond
        both = _stack_cond(cond, uncond) if cond is not None else None
        denoise = guidance.cfg_denoiser(guidance.batched_pair(denoiser(params, config, both)), cfg,
                                        rescale=cfg_rescale, interval=cfg_interval)

    # Start: noise, or audio-to-audio.
    x_init = samplers.initial_noise(keys, (n_mels, model_frames), sigmas[0])
    inpaint = None
    if init_audio is not None:
        init_audio = jnp.asarray(init_audio, jnp.float32)
        if init_audio.ndim == 1:
            init_audio = jnp.broadcast_to(init_audio, (B, init_audio.shape[0]))
        if init_audio.shape[-1] > samples:
            raise ParamError(f"init_audio has {init_audio.shape[-1]} samples, more than the {samples} to generate")
        init_audio = jnp.pad(init_audio, ((0, 0), (0, samples - init_audio.shape[-1])))
        known = audio_to_model_space(init_audio, config, stats, model_frames)
        if strength is not None:
            x_init, sigmas = samplers.variation_start(known, sigmas, strength, keys)
        if mask is not None:
            m = jnp.broadcast_to(jnp.asarray(mask, jnp.float32).reshape(-1, 1, model_frames) if jnp.ndim(mask) == 2
                                 else jnp.asarray(mask, jnp.float32).reshape(1, 1, model_frames), known.shape)
            inpaint = (known, m)

    out = samplers.sample(denoise, x_init, sigmas, keys, sampler=sampler, eta=eta, inpaint=inpaint,
                          return_trajectory=return_trajectory)

    log_mel = to_log_mel(out.x[..., :frames], stats, config.audio, length)  # [B, n_mels, frames]
    if not vocode:
        return Generated(None, log_mel, out.trajectory_x, out.trajectory_x0)
    phase_keys = jax.vmap(lambda k: jax.random.fold_in(k, _GLA_STREAM))(keys)
    bins = config.audio.n_fft // 2 + 1
    phase = jax.vmap(lambda k: 2 * jnp.pi * jax.random.uniform(k, (bins, frames)))(phase_keys)
    if inpaint is not None:
        # Griffin-Lim starts from the known audio's own STFT phase where the mask keeps it, so the
        # kept region comes back phase-coherent with the input (the basis of continuation/streaming).
        known_phase = jnp.angle(stft(init_audio, config.audio.n_fft, config.audio.hop_length))[..., :frames]
        keep = inpaint[1][:, :1, :frames] > 0.5  # [B, 1, frames]
        phase = jnp.where(keep, known_phase, phase)
    audio = frontend.log_mel_to_audio(
        log_mel, config.audio, init_phase=phase, length=samples,
        gla_iters=sc.gla_iters if gla_iters is None else gla_iters,
        nnls_iters=sc.nnls_iters if nnls_iters is None else nnls_iters,
    )
    return Generated(audio, log_mel, out.trajectory_x, out.trajectory_x0)


STATIC = ("config", "stats", "seconds", "batch", "sampler", "steps", "schedule", "gla_iters", "nnls_iters",
          "return_trajectory", "vocode")

generate_jit = jax.jit(generate, static_argnames=STATIC)
"""``generate`` compiled once per static arguments and input shapes."""


def guidance_scale(cfg: float, config: Config):
    """The ``cfg=`` argument of :func:`generate` for a host-side guidance scale: None (one network
    call per step) when guidance cannot act -- scale 1, or a model without labels -- else f32[]."""
    return None if (cfg == 1.0 or not config.model.labels) else jnp.float32(cfg)


def nfe(config: Config, sampler: str | None = None, steps: int | None = None) -> int:
    """Exact number of network evaluations of one generate call (a guided call counts once:
    the conditional and unconditional branches run as one batched evaluation)."""
    return samplers.nfe(config.sampling.sampler if sampler is None else sampler,
                        config.sampling.steps if steps is None else steps)


# ---------------------------------------------------------------------- export


def export_generate(params, config: Config, stats: MelStats, *, seconds: float, batch: int,
                    sampler: str | None = None, steps: int | None = None, guided: bool = True,
                    platforms: tuple[str, ...] | None = None) -> bytes:
    """Serialize generate (params baked in) with ``jax.export``: bytes to save as a file.

    The exported function is ``(key_data: uint32[2], labels: i32[batch, n_labels], cfg: f32[])
    -> audio f32[batch, samples]`` (``labels`` is i32[batch, 0] for an unconditional model;
    ``cfg`` is ignored when ``guided=False``). It runs with :func:`load_exported`, which needs
    jax only: no model code, no flax. ``platforms``: e.g. ("cpu", "cuda"); None = this backend.
    """
    from jax import export

    n_labels = len(config.model.labels)

    def fn(key_data, labels, cfg):
        key = jax.random.wrap_key_data(key_data)
        cond = {"labels": labels} if n_labels else None
        return generate(params, key, cond, config=config, stats=stats, seconds=seconds, batch=batch,
                        sampler=sampler, steps=steps, cfg=cfg if guided else None).audio

    args = (jax.ShapeDtypeStruct((2,), jnp.uint32), jax.ShapeDtypeStruct((batch, n_labels), jnp.int32),
            jax.ShapeDtypeStruct((), jnp.float32))
    exported = export.export(jax.jit(fn), platforms=platforms)(*args)
    return bytes(exported.serialize())


def load_exported(blob: bytes):
    """Deserialize an :func:`export_generate` artifact: returns ``f(key_data, labels, cfg) -> audio``."""
    from jax import export

    return export.deserialize(bytearray(blob)).call
