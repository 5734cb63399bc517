"""generate(): noise -> sampler -> denormalised log-mel -> mel inversion -> Griffin-Lim -> waveform.

The whole path is one jitted XLA program: the sampler is one ``lax.scan`` (see
``diffusion.samplers``), mel inversion one ``fori_loop`` and Griffin-Lim one ``lax.scan``;
nothing returns to the host in between.

A call has a static part and traced parts. Static (one compiled program each): the
:class:`ModelSpec` (front end, network, formulation, normaliser) and the :class:`SamplingSpec`
(shapes, sampler, step count, schedule, vocoder iterations), both resolved and checked on the
host by :func:`sampling_spec`. Traced: params, key, conditioning, :class:`Guidance` (scale,
rescale, interval, negative conditioning), :class:`AudioPrompt` (audio, mask or strength) and
eta, so a batch of different guidance scales or seeds is one call (or a vmap).

Three layers, nothing reaching past one: this module (keys, conditioning, guidance,
audio in and out) -> ``diffusion.samplers`` (solvers sharing one signature) -> the model.

Randomness: ``key`` is split into one key per sample, ``fold_in(key, b)``; the sampler
noise, the initial noise and the Griffin-Lim initial phase of sample b all come from
that key, so a sample does not depend on the batch size or its place in the batch.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple, Optional

import numpy as np
import jax
import jax.numpy as jnp

from audiox_jax.audio import frontend
from audiox_jax.audio.frontend import AudioConfig
from audiox_jax.audio.stft import stft
from audiox_jax.audio.mel import MelStats, denormalize, normalize
from audiox_jax.config import Config, DiffusionConfig
from audiox_jax.models.dit import DiTConfig
from audiox_jax.diffusion import guidance as guiding, samplers, schedules
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


def default_seconds(config: Config) -> float:
    """The length a model makes when none is asked for: its training items' length
    (``data.max_seconds`` for whole files, else ``data.clip_seconds``)."""
    return float(config.data.max_seconds if config.data.whole_files else config.data.clip_seconds)


# ---------------------------------------------------------------------- the call's parts


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """What a compiled program knows of the model (static): its front end, network, formulation
    and normaliser -- not the training or data settings, so those never cause a recompile."""

    audio: AudioConfig
    model: DiTConfig
    diffusion: DiffusionConfig
    stats: MelStats

    @classmethod
    def of(cls, config: Config, stats: MelStats) -> "ModelSpec":
        if config.model.n_mels != config.audio.n_mels:
            raise ParamError(f"model.n_mels={config.model.n_mels} differs from audio.n_mels={config.audio.n_mels}; "
                             "make them equal")
        return cls(config.audio, config.model, config.diffusion, stats)


@dataclasses.dataclass(frozen=True)
class SamplingSpec:
    """The static part of a generate call, resolved on the host and checked once by
    :func:`sampling_spec`: output shape (samples, mel frames, model frames, batch), sampler,
    step count, schedule (rho, shift) and vocoder iterations; whether to return the sampler's
    trajectory, and whether to vocode at all (False stops at the log-mel)."""

    samples: int
    frames: int
    model_frames: int
    batch: int
    sampler: str
    steps: int
    schedule: str
    rho: float
    shift: float
    gla_iters: int
    nnls_iters: int
    trajectory: bool = False
    vocode: bool = True

    def seconds(self, sr: int) -> float:
        return self.samples / sr

    @property
    def nfe(self) -> int:
        """Exact network evaluations per sample (a guided call counts once: both branches are one batch)."""
        return samplers.nfe(self.sampler, self.steps)


def sampling_spec(config: Config, *, seconds: float | None = None, batch: int = 1, sampler: str | None = None,
                  steps: int | None = None, schedule: str | None = None, gla_iters: int | None = None,
                  nnls_iters: int | None = None, trajectory: bool = False, vocode: bool = True) -> SamplingSpec:
    """Resolve a call's static settings: None = the model's defaults (``config.sampling``, the front
    end's vocoder iterations, :func:`default_seconds`); every value is checked here, once."""
    sc = config.sampling
    sampler = sc.sampler if sampler is None else sampler
    steps = sc.steps if steps is None else steps
    schedule = sc.schedule if schedule is None else schedule
    if sampler not in samplers.SAMPLERS:
        raise ParamError(f"sampler={sampler!r} is not one of {list(samplers.SAMPLERS)}")
    if schedule not in schedules.SCHEDULES:
        raise ParamError(f"schedule={schedule!r} is not one of {list(schedules.SCHEDULES)}")
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 1:
        raise ParamError(f"steps={steps} must be an integer >= 1")
    if isinstance(batch, bool) or not isinstance(batch, (int, np.integer)) or batch < 1:
        raise ParamError(f"batch={batch} must be an integer >= 1")
    check_sampler(config, sampler)
    gla = config.audio.gla_iters if gla_iters is None else gla_iters
    nnls = config.audio.nnls_iters if nnls_iters is None else nnls_iters
    if gla < 0 or nnls < 0:
        raise ParamError(f"gla_iters={gla} and nnls_iters={nnls} must be >= 0")
    seconds = default_seconds(config) if seconds is None else float(seconds)
    samples, frames, model_frames = shapes(config, seconds)
    return SamplingSpec(samples, frames, model_frames, int(batch), sampler, int(steps), schedule, sc.rho, sc.shift,
                        int(gla), int(nnls), bool(trajectory), bool(vocode))


class Guidance(NamedTuple):
    """Classifier-free guidance (traced): scale w ([] or f32[B]; 1 = conditional only), rescale phi
    in [0, 1], the interval (lo, hi) in VE sigma where it acts, and an optional conditioning to
    guide away from (replaces the unconditional branch)."""

    scale: jax.Array
    rescale: jax.Array = np.float32(0.0)
    lo: jax.Array = np.float32(0.0)
    hi: jax.Array = np.float32(np.inf)
    negative: dict | None = None


def guidance(config: Config, scale: float | None = None, rescale: float | None = None) -> Guidance | None:
    """A call's :class:`Guidance` from host values (None = ``config.sampling``'s), or None -- one
    network call per step -- when guidance cannot act: scale 1, or a model without labels."""
    scale = config.sampling.cfg if scale is None else float(scale)
    rescale = config.sampling.cfg_rescale if rescale is None else float(rescale)
    if not np.isfinite(scale):
        raise ParamError(f"cfg={scale} must be a finite number (1 = no guidance, 2-4 usual)")
    if not 0.0 <= rescale <= 1.0:
        raise ParamError(f"cfg_rescale={rescale} must be in [0, 1]")
    if scale == 1.0 or not config.model.labels:
        return None
    return Guidance(np.float32(scale), np.float32(rescale))


class AudioPrompt(NamedTuple):
    """Audio-to-audio input (traced): audio f32[B, samples] (zero-padded to the call's length), and
    either mask f32[B, model_frames] (1 = keep the input there: inpainting, continuation) or
    strength f32[] in [0, 1] (variation: 1 = from pure noise). Build it with :func:`audio_prompt`."""

    audio: jax.Array
    mask: jax.Array | None = None
    strength: jax.Array | None = None


def audio_prompt(spec: SamplingSpec, config: Config, audio, *, mask=None, continue_audio: bool = False,
                 strength: float | None = None) -> AudioPrompt:
    """Check and shape an audio prompt for ``spec``: audio f32[n] or f32[B, n] with n <= spec.samples, and
    exactly one of ``mask`` (f32[model_frames] or f32[B, model_frames]), ``continue_audio`` (keep all of the
    input, :func:`continuation_mask`) or ``strength`` in [0, 1]."""
    y = np.asarray(audio, np.float32)
    if y.ndim not in (1, 2) or y.shape[-1] == 0:
        raise ParamError(f"init_audio must be mono f32[samples] (or f32[batch, samples]), got shape {y.shape}")
    if not np.all(np.isfinite(y)):
        raise ParamError("init_audio holds NaN or Inf samples")
    n = y.shape[-1]
    sr = config.audio.sr
    if n > spec.samples:
        raise ParamError(f"init_audio is {n / sr:.2f} s, longer than the {spec.samples / sr:.2f} s to generate; "
                         "ask for more seconds or trim it")
    chosen = [name for name, given in (("mask", mask is not None), ("continue_audio", continue_audio),
                                       ("strength", strength is not None)) if given]
    if len(chosen) != 1:
        raise ParamError("init_audio needs exactly one of continue_audio=True (continue it), mask= (keep those "
                         f"frames) or strength= (vary all of it); got {chosen or 'none'}")
    y = np.broadcast_to(np.pad(y, [(0, 0)] * (y.ndim - 1) + [(0, spec.samples - n)]), (spec.batch, spec.samples))
    if strength is not None:
        if not 0.0 <= float(strength) <= 1.0:
            raise ParamError(f"strength={strength} must be in [0, 1] (0 = the input, 1 = from pure noise)")
        return AudioPrompt(jnp.asarray(y), strength=jnp.float32(strength))
    m = continuation_mask(n, config, spec.model_frames) if continue_audio else np.asarray(mask, np.float32)
    if m.shape not in ((spec.model_frames,), (spec.batch, spec.model_frames)):
        raise ParamError(f"mask must be f32[{spec.model_frames}] or f32[{spec.batch}, {spec.model_frames}] "
                         f"(model frames), got shape {m.shape}")
    return AudioPrompt(jnp.asarray(y), mask=jnp.asarray(np.broadcast_to(m, (spec.batch, spec.model_frames))))


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


def _check_batch(cond: dict | None, batch: int) -> None:
    sizes = {int(v.shape[0]) for v in jax.tree.leaves(cond)} if cond else set()
    if sizes - {batch}:
        raise ParamError(f"the conditioning arrays have leading sizes {sorted(sizes)} but the call makes "
                         f"{batch} clips (spec.batch); give one row per clip")


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


def generate(params, key: jax.Array, cond: dict | None, *, model: ModelSpec, spec: SamplingSpec,
             guide: Guidance | None = None, prompt: AudioPrompt | None = None, eta=None) -> Generated:
    """Generate ``spec.batch`` clips of ``spec.samples`` samples; jit it with :func:`generate_jit`.

    params: the DiT's params pytree (usually the EMA params). key: one ``jax.random`` key;
    sample b uses ``fold_in(key, b)``. cond: DiT conditioning ({"labels": i32[B, n_labels],
    "vec", "seq"}; label -1 = unconditional for that label), None for an unconditional model.
    Length-conditioned models also take "length": f32[B], the sound's length in frames
    (missing = the whole call); the frames after it are silence.
    model, spec: static (:class:`ModelSpec`, :func:`sampling_spec`). guide: :func:`guidance`
    (None = one network call per step). prompt: :func:`audio_prompt` (inpainting/continuation
    with a mask -- Griffin-Lim then starts from the input's own phase in the kept frames, so they
    come back phase-coherent with it -- or variation with a strength). eta: the sampler's
    stochasticity ("ddim", "dpmpp_2m_sde"; traced), None = its default.
    Returns :class:`Generated`: audio f32[B, samples] (None when ``spec.vocode`` is False).
    """
    B, frames, mf = spec.batch, spec.frames, spec.model_frames
    _check_batch(cond, B)
    length = None
    if model.model.length_cond:
        length = jnp.minimum(jnp.asarray((cond or {}).get("length", jnp.full((B,), frames)), jnp.float32), frames)
        cond = {**(cond or {}), "length": length}
        if guide is not None and guide.negative is not None:
            guide = guide._replace(negative={**guide.negative, "length": length})
    form = model.diffusion.make_formulation()
    keys = sample_keys(key, B)
    sigmas = schedules.sigmas(spec.schedule, spec.steps, sigma_min=form.sigma_min, sigma_max=form.sigma_max,
                              rho=spec.rho, shift=spec.shift, formulation=form)
    if guide is None:
        denoise = denoiser(params, model, cond)
    else:  # both branches as one batched network call; an unconditional model's branches coincide
        uncond = guide.negative if guide.negative is not None else (null_cond(cond) or cond)
        both = _stack_cond(cond, uncond) if cond is not None else None
        denoise = guiding.cfg_denoiser(guiding.batched_pair(denoiser(params, model, both)), guide.scale,
                                        rescale=guide.rescale, interval=(guide.lo, guide.hi))

    x_init, inpaint = samplers.initial_noise(keys, (model.model.n_mels, mf), sigmas[0]), None
    if prompt is not None:
        known = audio_to_model_space(prompt.audio, model, model.stats, mf)
        if prompt.strength is not None:
            x_init, sigmas = samplers.variation_start(known, sigmas, prompt.strength, keys)
        if prompt.mask is not None:
            inpaint = (known, jnp.broadcast_to(prompt.mask[:, None, :], known.shape))
    out = samplers.sample(denoise, x_init, sigmas, keys, sampler=spec.sampler, eta=eta, inpaint=inpaint,
                          return_trajectory=spec.trajectory)

    log_mel = to_log_mel(out.x[..., :frames], model.stats, model.audio, length)  # [B, n_mels, frames]
    if not spec.vocode:
        return Generated(None, log_mel, out.trajectory_x, out.trajectory_x0)
    phase_keys = jax.vmap(lambda k: jax.random.fold_in(k, _GLA_STREAM))(keys)
    bins = model.audio.n_fft // 2 + 1
    phase = jax.vmap(lambda k: 2 * jnp.pi * jax.random.uniform(k, (bins, frames)))(phase_keys)
    if inpaint is not None:  # Griffin-Lim starts from the known audio's STFT phase where the mask keeps it
        known_phase = jnp.angle(stft(prompt.audio, model.audio.n_fft, model.audio.hop_length))[..., :frames]
        phase = jnp.where(prompt.mask[:, None, :frames] > 0.5, known_phase, phase)
    audio = frontend.log_mel_to_audio(log_mel, model.audio, init_phase=phase, length=spec.samples,
                                      gla_iters=spec.gla_iters, nnls_iters=spec.nnls_iters)
    return Generated(audio, log_mel, out.trajectory_x, out.trajectory_x0)


generate_jit = jax.jit(generate, static_argnames=("model", "spec"))
"""``generate`` compiled once per (model, spec) and input shapes."""


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
    model = ModelSpec.of(config, stats)
    spec = sampling_spec(config, seconds=seconds, batch=batch, sampler=sampler, steps=steps)
    eta = config.sampling.eta_for(spec.sampler)
    guided = guided and n_labels > 0

    def fn(key_data, labels, cfg):
        key = jax.random.wrap_key_data(key_data)
        cond = {"labels": labels} if n_labels else None
        guide = Guidance(cfg, jnp.float32(config.sampling.cfg_rescale)) if guided else None
        return generate(params, key, cond, model=model, spec=spec, guide=guide, eta=eta).audio

    args = (jax.ShapeDtypeStruct((2,), jnp.uint32), jax.ShapeDtypeStruct((batch, n_labels), jnp.int32),
            jax.ShapeDtypeStruct((), jnp.float32))
    exported = export.export(jax.jit(fn), platforms=platforms)(*args)
    return bytes(exported.serialize())


def load_exported(blob: bytes):
    """Deserialize an :func:`export_generate` artifact: returns ``f(key_data, labels, cfg) -> audio``."""
    from jax import export

    return export.deserialize(bytearray(blob)).call
