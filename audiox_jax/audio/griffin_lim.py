"""Griffin-Lim phase reconstruction as one ``lax.scan``, batched and jit-able.

Two update rules:

* "fast" (default): the fast Griffin-Lim of Perraudin, Balazs & Sondergaard (2013)
  in librosa's form. With ``X_n`` the current estimate, ``R_n = STFT(ISTFT(S e^{i phase}))``
  its consistent projection and ``m`` the momentum::

      A = R_n - m / (1 + m) * R_{n-1};   phase_{n+1} = A / (|A| + eps)

  (Griffin & Lim 1984 is ``m = 0``.) Same momentum and iterations as
  ``librosa.griffinlim`` give the same result up to float error.
* "accelerated": the accelerated Griffin-Lim algorithm (AGLA) of Nenov, Nguyen,
  Balazs & Bot (2023, arXiv:2306.12504). With ``P(X) = STFT(ISTFT(S * phase(X)))``
  (magnitude projection, then consistency projection)::

      t_n = (1 - gamma) d_{n-1} + gamma P(c_{n-1})
      c_n = t_n + alpha (t_n - t_{n-1})
      d_n = t_n + beta  (t_n - t_{n-1})

  ``gamma = 1`` reduces to the FGLA of Perraudin et al. The defaults
  (0.99, 1.1, 1.25) were chosen by measurement here (BENCHMARKS.md): they reach a
  lower spectral convergence than FGLA at equal iterations; ``gamma >= 1.5``
  diverges on our test signals.

Implementation: the iteration never leaves the padded time domain. ISTFT followed
by a centred STFT with zero padding is: inverse FFT, window, overlap-add, multiply
by ``w = valid / window_sum_square`` (``valid`` zeroes the centre padding and
anything past ``length``), re-frame, window, FFT. Framing and overlap-add are
reshapes and strided adds (see :mod:`audiox_jax.audio.stft`). Because of this fused
form only ``center=True`` with zero ("constant") padding is supported, librosa's
default for ``griffinlim``.
"""

from __future__ import annotations

import numpy as np
import jax
import jax.numpy as jnp

from audiox_jax.errors import ParamError
from audiox_jax.audio.stft import check_params, frame, hann_window, n_frames, overlap_add, per_item, stft, window_sumsquare

METHODS = ("fast", "accelerated")


def _weights(n_fft: int, hop_length: int, n_fr: int, length: int, window: np.ndarray) -> np.ndarray:
    """f32[n_fft + hop * (n_fr - 1)]: 1 / window-sum-square inside the kept samples, 0 outside."""
    wss = window_sumsquare(window, n_fr, hop_length)
    tiny = np.finfo(np.float32).tiny
    inv = np.where(wss > tiny, 1.0 / np.maximum(wss, tiny), 1.0)
    valid = np.zeros_like(inv)
    valid[n_fft // 2 : n_fft // 2 + length] = 1.0
    return (inv * valid).astype(np.float32)


def griffin_lim(
    magnitude: jnp.ndarray,
    *,
    n_fft: int,
    hop_length: int,
    n_iter: int = 32,
    momentum: float = 0.99,
    key: jax.Array | None = None,
    init_phase: jnp.ndarray | None = None,
    length: int | None = None,
    win_length: int | None = None,
    method: str = "fast",
    alpha: float = 0.99,
    beta: float = 1.1,
    gamma: float = 1.25,
) -> jnp.ndarray:
    """Reconstruct a waveform from an STFT magnitude by iterative phase retrieval.

    Args:
      magnitude: f32[..., n_fft // 2 + 1, frames], ``|STFT|`` in :func:`stft`'s layout
        (the same layout as librosa, so code ports 1:1). Leading axes are a batch.
      n_fft, hop_length, win_length: the STFT the magnitude came from (periodic Hann,
        ``center=True``, zero padding).
      n_iter: iterations (static); each is one inverse and one forward STFT.
      momentum: "fast" method's momentum ``m`` (librosa's default 0.99; 0 = plain GLA).
        Traced, so it can be vmapped.
      key: ``jax.random`` key for a uniformly random initial phase. With neither
        ``key`` nor ``init_phase`` the initial phase is zero (librosa's ``init=None``).
      init_phase: f32[..., bins, frames] initial phase in radians (e.g. from the
        previous chunk of a stream); overrides ``key``.
      length: output length in samples; None gives ``hop_length * (frames - 1)``.
        Must give the same frame count as ``magnitude``.
      method: "fast" (librosa's FGLA) or "accelerated" (Nenov et al. 2023).
      alpha, beta, gamma: the accelerated method's parameters (traced).
    Returns:
      f32[..., length] waveform.
    """
    win_length = check_params(n_fft, hop_length, win_length)
    if method not in METHODS:
        raise ParamError(f"method={method!r} is not a Griffin-Lim variant; choose one of {METHODS}")
    if not isinstance(n_iter, (int, np.integer)) or n_iter < 0:
        raise ParamError(f"n_iter={n_iter!r} must be a non-negative integer; try n_iter=32")
    bins, n_fr = magnitude.shape[-2:]
    if bins != n_fft // 2 + 1:
        raise ParamError(
            f"magnitude has {bins} frequency bins but n_fft={n_fft} gives {n_fft // 2 + 1}; "
            "pass the n_fft the spectrogram was made with"
        )
    length = hop_length * (n_fr - 1) if length is None else int(length)
    if n_frames(length, n_fft, hop_length) != n_fr:
        raise ParamError(
            f"length={length} samples gives {n_frames(length, n_fft, hop_length)} frames but magnitude "
            f"has {n_fr}; pass length=None or a length in [{hop_length * (n_fr - 1)}, {hop_length * n_fr - 1}]"
        )

    window = hann_window(win_length, n_fft)
    win = jnp.asarray(window)
    w = jnp.asarray(_weights(n_fft, hop_length, n_fr, length, window))
    S = jnp.swapaxes(jnp.asarray(magnitude, jnp.float32), -1, -2)  # [..., frames, bins]
    eps = np.finfo(np.float32).tiny

    def inverse(X):  # complex [..., frames, bins] -> masked, normalised padded signal
        return overlap_add(jnp.fft.irfft(X, n=n_fft, axis=-1) * win, hop_length) * w

    def forward(y):  # padded signal -> complex [..., frames, bins]
        return jnp.fft.rfft(frame(y, n_fft, hop_length) * win, axis=-1)

    def unit(X, scale=1.0):  # scale * X / |X| via one rsqrt (cheaper than abs + complex divide)
        re, im = jnp.real(X), jnp.imag(X)
        r = scale * jax.lax.rsqrt(re * re + im * im + eps)
        return jax.lax.complex(re * r, im * r)

    if init_phase is not None:
        phase0 = jnp.exp(1j * jnp.swapaxes(jnp.asarray(init_phase, jnp.float32), -1, -2))
    elif key is not None:
        phase0 = jnp.exp(2j * np.pi * jax.random.uniform(key, S.shape))
    else:
        phase0 = jnp.ones(S.shape, jnp.complex64)
    phase0 = jnp.broadcast_to(phase0.astype(jnp.complex64), S.shape)

    def one(S, phase0):  # f32[frames, bins], complex64[frames, bins] -> f32[length]
        if method == "fast":
            coef = momentum / (1.0 + momentum)

            def step(carry, _):  # carry X = S * phase, so the magnitude product fuses into the update
                X, prev = carry
                rebuilt = forward(inverse(X))
                return (unit(rebuilt - coef * prev, S), rebuilt), None

            (X, _), _ = jax.lax.scan(step, (S * phase0, jnp.zeros_like(phase0)), None, length=n_iter)
        else:

            def step(carry, _):
                c, t_prev, d_prev = carry
                t = (1.0 - gamma) * d_prev + gamma * forward(inverse(S * unit(c)))
                return (t + alpha * (t - t_prev), t, t + beta * (t - t_prev)), None

            X0 = forward(inverse(S * phase0))
            (_, X, _), _ = jax.lax.scan(step, (X0, X0, X0), None, length=n_iter)
            X = S * unit(X)
        # Final ISTFT: same overlap-add, cut to the kept samples.
        return inverse(X)[n_fft // 2 : n_fft // 2 + length]

    return per_item(one, (S, phase0), (2, 2))


def spectral_convergence(magnitude: jnp.ndarray, y: jnp.ndarray, *, n_fft: int, hop_length: int) -> jnp.ndarray:
    """``||S - |STFT(y)||| / ||S||`` over the last two axes: f32[...] (0 is perfect)."""
    rebuilt = jnp.abs(stft(y, n_fft, hop_length))
    num = jnp.sqrt(jnp.sum((magnitude - rebuilt) ** 2, axis=(-2, -1)))
    return num / jnp.sqrt(jnp.sum(magnitude**2, axis=(-2, -1)))
