"""Distribution and reconstruction metrics: Frechet distance and its ratio to the vocoder's, the silence
floor, spectral convergence, log-spectral distance.

Definitions (stated once, here):

* Frechet distance between Gaussians N(mu1, S1) and N(mu2, S2) fitted to two sets of
  embeddings (Heusel et al. 2017, "GANs trained by a two time-scale update rule", the
  FID)::

      FD = |mu1 - mu2|^2 + tr(S1 + S2 - 2 (S1 S2)^(1/2))

  computed in float64 with ``tr((S1 S2)^(1/2)) = sum_i sqrt(lambda_i)``, ``lambda_i`` the
  eigenvalues of the symmetric PSD matrix ``S1^(1/2) S2 S1^(1/2)`` (same spectrum as
  ``S1 S2``), so no complex ``sqrtm`` and no NaN from round-off. Covariances are the
  unbiased sample covariances (``N - 1``). With fewer samples than dimensions the
  estimate is biased upwards (a warning says so): compare FDs at equal sample counts.
* FD ratio: ``FD(generated, real) / FD(vocoded real, real)``, both on the same embeddings
  against the same real reference set, the vocoded real clips as many as the generated
  notes (so the sample-count bias is shared). 1 = as close to the real data as the real
  data itself after log-mel -> NNLS -> Griffin-Lim, the best a log-mel model can do; the
  raw FD's scale depends on the embedding, the ratio's does not.
* Silence floor (:func:`silence_floor`): the level, in dB, of a log-mel in the frames where
  its matched real clip is silent. A real clip's silent frames are its quietest
  ``SILENT_FRACTION`` = 20 % of frames by frame energy (the sum over mel bins of the mel
  power), plus every frame past its end when the other clip is longer. The quietest 20 %
  rather than "below peak - 60 dB": a 1.0 s note cut 0.2 s after its key-up never falls
  60 dB below its peak, and a fixed share gives every clip the same weight. The level of a
  clip is the mean of its log-mel over those frames and all bins, in dB (an "ln" log-mel
  times ``10 log10(e)`` = 4.343; "db" as is); frames past the real clip's end have the log
  floor as their real level (``10 log10(floor)``, -50 dB for the default 1e-5). Reported
  for the generated notes and for their real clips, and the difference: 0 dB = as quiet as
  the real notes where they are silent; a hiss or a hum under a note raises it.
* Reconstruction of a waveform ``y`` by ``y_hat`` (both f32[..., samples]), on the STFT
  magnitudes ``S = |STFT(y)|``, ``S_hat = |STFT(y_hat)|`` with the front end's n_fft and hop:

  - spectral convergence ``SC = ||S - S_hat||_F / ||S||_F`` per clip (0 is perfect);
  - log-spectral distance, in dB, per clip: the mean over frames of
    ``sqrt(mean_k (10 log10(max(S^2, F) / max(S_hat^2, F)))^2)``, with the floor ``F``
    ``LSD_RANGE_DB`` = 80 dB below the reference clip's peak ``max S^2`` (so bins quieter
    than that in both count as equal: an absolute floor such as 1e-10 lets the -100 dB
    corners of a spectrogram dominate the figure).
* The vocoder path: ``vocode(y) = log_mel_to_audio(log_mel(y))``, i.e. log-mel ->
  NNLS mel inversion -> Griffin-Lim from a random initial phase (as ``pipeline.generate``
  does), the config's iteration counts; clip ``b`` uses ``fold_in(key(seed), b)``.
"""

from __future__ import annotations

import functools
import warnings

import jax
import jax.numpy as jnp
import numpy as np

from audiox_jax.audio import AudioConfig, log_mel, log_mel_to_audio, spectral_convergence, stft
from audiox_jax.errors import ParamError

LSD_RANGE_DB = 80.0  # the log-spectral distance ignores differences this far below the reference's peak
SILENT_FRACTION = 0.2  # a real clip's silent frames: its quietest 20 %


def frechet_distance_gaussians(mu1, sigma1, mu2, sigma2) -> float:
    """``|mu1 - mu2|^2 + tr(S1 + S2 - 2 (S1 S2)^(1/2))`` for means f[d] and covariances f[d, d]."""
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    s1, s2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    d = mu1.shape[0]
    if mu1.shape != (d,) or mu2.shape != (d,) or s1.shape != (d, d) or s2.shape != (d, d):
        raise ParamError(f"means must be f[d] and covariances f[d, d] with one d; got {mu1.shape}, "
                         f"{s1.shape}, {mu2.shape}, {s2.shape}")
    root1 = _psd_sqrt(s1)
    lam = np.linalg.eigvalsh(root1 @ s2 @ root1)
    tr_cross = np.sum(np.sqrt(np.clip(lam, 0.0, None)))
    return float(np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2.0 * tr_cross)


def _psd_sqrt(s: np.ndarray) -> np.ndarray:
    """Symmetric square root of a symmetric PSD matrix f64[d, d] (negative round-off eigenvalues -> 0)."""
    lam, vec = np.linalg.eigh(0.5 * (s + s.T))
    return (vec * np.sqrt(np.clip(lam, 0.0, None))) @ vec.T


def frechet_distance(emb_a, emb_b) -> float:
    """Frechet distance between Gaussians fitted to embeddings f[N, d] and f[M, d] (N, M >= 2)."""
    a, b = np.asarray(emb_a, np.float64), np.asarray(emb_b, np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ParamError(f"embeddings must be f[N, d] and f[M, d] with the same d, got {a.shape} and {b.shape}")
    if len(a) < 2 or len(b) < 2:
        raise ParamError(f"the Frechet distance needs at least 2 embeddings per set, got {len(a)} and {len(b)}")
    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
        raise ParamError("embeddings hold NaN or Inf values")
    if min(len(a), len(b)) <= a.shape[1]:
        warnings.warn(f"Frechet distance from {len(a)} and {len(b)} samples of {a.shape[1]}-dim embeddings: "
                      "the covariances are rank-deficient and the distance is biased upwards; "
                      "compare only distances made with the same sample counts", stacklevel=2)
    return frechet_distance_gaussians(a.mean(0), np.cov(a, rowvar=False), b.mean(0), np.cov(b, rowvar=False))


def fd_ratio(fd_generated: float | None, fd_vocoded_real: float | None) -> float | None:
    """``FD(generated, real) / FD(vocoded real, real)`` (module docstring); None when either is missing.

    A vocoded-real FD of 0 (identical sets) gives inf for a positive numerator and 1 for a zero one.
    """
    if fd_generated is None or fd_vocoded_real is None:
        return None
    if fd_vocoded_real <= 0.0:
        return 1.0 if fd_generated <= 0.0 else float("inf")
    return float(fd_generated) / float(fd_vocoded_real)


def log_mel_db(logmel, cfg: AudioConfig) -> np.ndarray:
    """A log-mel of the front end ``cfg`` (f32[..., n_mels, frames]) in dB: "ln" values times 10 log10(e)."""
    logmel = np.asarray(logmel, np.float64)
    return logmel * (10.0 / np.log(10.0)) if cfg.log == "ln" else logmel


def silence_floor(generated, real, cfg: AudioConfig, *, fraction: float = SILENT_FRACTION) -> dict[str, float]:
    """Level in dB of generated log-mels where their matched real clips are silent (module docstring).

    Args:
      generated: f32[B, n_mels, Tg] log-mels of generated notes (``cfg``'s front end).
      real: f32[B, n_mels, Tr] log-mels of the matched real clips, row for row; Tg may be
        larger (frames past Tr count as silent, at the log floor) or smaller (the real
        clip's silent frames past Tg are left out).
      cfg: the front end, for the log kind and floor.
      fraction: share of a real clip's own frames counted as silent (0.2: its quietest 20 %).
    Returns:
      {"silence_floor_db_generated", "silence_floor_db_real", "silence_floor_db_difference"
      (generated - real), "silent_frames_per_clip"}: means over clips (a clip with no silent
      frame before Tg is left out).
    """
    g, r = log_mel_db(generated, cfg), log_mel_db(real, cfg)
    if g.ndim != 3 or r.ndim != 3 or g.shape[:2] != r.shape[:2] or len(g) == 0:
        raise ParamError(f"generated and real must be log-mels f32[B, n_mels, frames] with the same B and n_mels, "
                         f"got {g.shape} and {r.shape}")
    if not 0.0 < fraction <= 1.0:
        raise ParamError(f"fraction={fraction} must be in (0, 1]; try 0.2")
    tg, tr = g.shape[2], r.shape[2]
    floor_db = float(log_mel_db(np.log(cfg.floor) if cfg.log == "ln" else 10.0 * np.log10(cfg.floor), cfg))
    energy = 10.0 * np.log10(np.sum(10.0 ** (r / 10.0), axis=1))  # [B, Tr] frame energy in dB
    n_quiet = max(1, int(round(fraction * tr)))
    quiet = np.argsort(energy, axis=1, kind="stable")[:, :n_quiet]  # [B, n_quiet]
    gen_lv, real_lv, counts = [], [], []
    for b in range(len(g)):
        frames = quiet[b][quiet[b] < tg]
        past = np.arange(tr, tg)  # frames past the real clip's end: silent, real level = the floor
        n = len(frames) + len(past)
        if n == 0:  # a generated clip shorter than its real clip's first quiet frame: nothing to compare
            continue
        gen_lv.append((g[b][:, frames].sum() + g[b][:, past].sum()) / (n * g.shape[1]))
        real_lv.append((r[b][:, frames].sum() + floor_db * len(past) * r.shape[1]) / (n * r.shape[1]))
        counts.append(n)
    if not gen_lv:
        raise ParamError(f"generated log-mels of {tg} frames end before every real clip's silent frames; "
                         "generate notes as long as the real clips")
    gen_db, real_db = float(np.mean(gen_lv)), float(np.mean(real_lv))
    return {"silence_floor_db_generated": gen_db, "silence_floor_db_real": real_db,
            "silence_floor_db_difference": gen_db - real_db, "silent_frames_per_clip": float(np.mean(counts))}


def log_spectral_distance(
    magnitude: jnp.ndarray, estimate: jnp.ndarray, *, range_db: float = LSD_RANGE_DB
) -> jnp.ndarray:
    """LSD in dB, f32[...], of ``estimate`` against reference ``magnitude``, STFT magnitudes f32[..., bins, frames].

    Powers are floored ``range_db`` (80 dB) below the reference's peak (module docstring).
    """
    P, P_hat = magnitude**2, estimate**2
    floor = jnp.maximum(jnp.max(P, axis=(-2, -1), keepdims=True) * 10.0 ** (-range_db / 10.0), 1e-30)
    diff = 10.0 * (jnp.log10(jnp.maximum(P, floor)) - jnp.log10(jnp.maximum(P_hat, floor)))  # [..., bins, frames]
    return jnp.mean(jnp.sqrt(jnp.mean(diff**2, axis=-2)), axis=-1)


@functools.partial(jax.jit, static_argnames=("cfg",))
def _vocode(y: jnp.ndarray, key: jax.Array, cfg: AudioConfig) -> jnp.ndarray:
    keys = jax.vmap(lambda b: jax.random.fold_in(key, b))(jnp.arange(y.shape[0]))
    one = lambda yb, k: log_mel_to_audio(log_mel(yb, cfg), cfg, key=k, length=y.shape[-1])
    return jax.vmap(one)(y, keys)


def vocode(y, cfg: AudioConfig, *, seed: int = 0) -> np.ndarray:
    """Waveforms f32[B, samples] -> the same through log-mel -> mel inversion -> Griffin-Lim, f32[B, samples]."""
    y = _batch(y)
    return np.asarray(_vocode(jnp.asarray(y), jax.random.key(seed), cfg))


@functools.partial(jax.jit, static_argnames=("n_fft", "hop_length"))
def _reconstruction(y, y_hat, n_fft, hop_length):
    S, S_hat = jnp.abs(stft(y, n_fft, hop_length)), jnp.abs(stft(y_hat, n_fft, hop_length))
    sc = spectral_convergence(S, y_hat, n_fft=n_fft, hop_length=hop_length)
    return sc, log_spectral_distance(S, S_hat)


def reconstruction_metrics(y, y_hat, cfg: AudioConfig) -> dict[str, float]:
    """Mean spectral convergence and log-spectral distance (dB) of ``y_hat`` against ``y``, both f32[B, samples]."""
    y, y_hat = _batch(y), _batch(y_hat)
    if y.shape != y_hat.shape:
        raise ParamError(f"y {y.shape} and y_hat {y_hat.shape} must have the same shape")
    sc, lsd = _reconstruction(jnp.asarray(y), jnp.asarray(y_hat), cfg.n_fft, cfg.hop_length)
    return {"spectral_convergence": float(jnp.mean(sc)), "log_spectral_distance_db": float(jnp.mean(lsd)),
            "clips": int(y.shape[0])}


def vocoder_metrics(y, cfg: AudioConfig, *, seed: int = 0) -> dict[str, float]:
    """How well the vocoder path alone rebuilds real audio ``y`` f32[B, samples] (or f32[samples]).

    Returns {"spectral_convergence", "log_spectral_distance_db", "clips"}: means over clips
    of ``vocode(y)`` against ``y`` (definitions in the module docstring).
    """
    return reconstruction_metrics(y, vocode(y, cfg, seed=seed), cfg)


def _batch(y) -> np.ndarray:
    y = np.asarray(y, np.float32)
    y = y[None] if y.ndim == 1 else y
    if y.ndim != 2 or y.shape[0] == 0:
        raise ParamError(f"audio must be f32[samples] or f32[B, samples] with B >= 1, got shape {y.shape}")
    if not np.all(np.isfinite(y)):
        raise ParamError("audio holds NaN or Inf samples")
    return y


def seam_flux_ratio(y, seams, cfg: AudioConfig) -> float:
    """Spectral flux at stream seams / spectral flux elsewhere (1 = seams look like any frame).

    y: f32[samples] a stream; seams: sample indices where chunks meet (the centre of each
    cross-fade). Flux of frame t = RMS over mel bins of ``log_mel[:, t] - log_mel[:, t-1]``;
    a seam's flux is the largest over the frames within one hop of the seam.
    """
    lm = np.asarray(log_mel(jnp.asarray(y, jnp.float32), cfg))
    flux = np.sqrt(np.mean(np.diff(lm, axis=1) ** 2, axis=0))  # [frames - 1], flux[t-1] is frame t
    near = np.zeros(flux.shape, bool)
    for s in seams:
        f = int(round(s / cfg.hop_length))
        near[max(0, f - 2) : f + 1] = True
    if not near.any() or near.all():
        raise ParamError("seam_flux_ratio needs seams inside the signal and frames away from them")
    at = [flux[max(0, int(round(s / cfg.hop_length)) - 2) : int(round(s / cfg.hop_length)) + 1].max() for s in seams]
    return float(np.mean(at) / np.mean(flux[~near]))
