"""Short-time Fourier transform and its inverse, in JAX, with librosa's conventions.

Conventions (stated once, here):

* Window: periodic ("DFT-even") Hann of ``win_length`` samples, zero-padded
  symmetrically to ``n_fft`` (``scipy.signal.get_window("hann", N, fftbins=True)``;
  note ``jnp.hanning`` is the *symmetric* window and is not used).
* Centring: with ``center=True`` the signal is padded by ``n_fft // 2`` samples on
  both sides (``pad_mode`` "constant" = zeros, librosa's default, or "reflect"), so
  frame ``f`` is centred on sample ``f * hop_length``. The frame count is
  ``1 + (samples + 2 * (n_fft // 2) - n_fft) // hop_length``, which is
  ``1 + samples // hop_length`` for even ``n_fft``.
* Layout: spectra are ``complex64[..., n_fft // 2 + 1, frames]`` (frequency before
  time, as librosa), batched over any leading axes.
* No normalisation in the forward transform; ``istft`` divides by the window
  sum-square envelope where it is above float32 ``tiny``, exactly as librosa.

Framing and overlap-add use reshapes and strided slices when ``hop_length``
divides ``n_fft`` (the usual case, and the fast path): a gather or scatter is used
only otherwise.
"""

from __future__ import annotations

import librosa
import numpy as np
import jax
import jax.numpy as jnp

from audiox_jax.errors import ParamError

PAD_MODES = ("constant", "reflect")


def hann_window(win_length: int, n_fft: int | None = None) -> np.ndarray:
    """Periodic Hann window, f32[n_fft], centred and zero-padded from ``win_length``: librosa's own
    ``filters.get_window("hann", win_length)`` and ``util.pad_center`` (host side, at trace time)."""
    n_fft = win_length if n_fft is None else n_fft
    win = librosa.filters.get_window("hann", win_length, fftbins=True)
    return librosa.util.pad_center(win, size=n_fft).astype(np.float32)


def check_params(n_fft: int, hop_length: int, win_length: int | None) -> int:
    """Validate the static STFT sizes before tracing; returns the effective win_length."""
    if not isinstance(n_fft, (int, np.integer)) or n_fft < 2:
        raise ParamError(f"n_fft={n_fft!r} must be an integer >= 2; try n_fft=1024")
    if not isinstance(hop_length, (int, np.integer)) or not 1 <= hop_length <= n_fft:
        raise ParamError(
            f"hop_length={hop_length!r} must be an integer in [1, n_fft={n_fft}]; "
            f"try hop_length=n_fft // 4 = {n_fft // 4}"
        )
    win_length = n_fft if win_length is None else win_length
    if not 1 <= win_length <= n_fft:
        raise ParamError(f"win_length={win_length!r} must be in [1, n_fft={n_fft}]; try win_length=None")
    return int(win_length)


def per_item(fn, args, item_ndims):
    """Apply ``fn`` to each item of the leading (batch) axes of ``args``.

    ``args`` is a tuple of arrays sharing their leading axes; ``item_ndims`` gives, per
    array, how many trailing axes one item has. On CPU the items run one after another
    (``lax.map``): one 10 s clip's frames (3.5 MB) stay in cache, while a batch of 16
    processed at once is memory-bound and 2-3x slower per clip. Elsewhere (GPU/TPU) the
    batch is vectorised (``vmap``). The result is the same either way.
    """
    lead = args[0].shape[: args[0].ndim - item_ndims[0]]
    if not lead:
        return fn(*args)
    flat = tuple(a.reshape((-1,) + a.shape[a.ndim - k :]) for a, k in zip(args, item_ndims))
    mapped = jax.lax.map(lambda xs: fn(*xs), flat) if jax.default_backend() == "cpu" else jax.vmap(fn)(*flat)
    return jax.tree.map(lambda o: o.reshape(lead + o.shape[1:]), mapped)


def frame(x: jnp.ndarray, n_fft: int, hop_length: int) -> jnp.ndarray:
    """Slice a signal into overlapping frames.

    Args:
      x: f32[..., samples], already padded; ``samples >= n_fft``.
    Returns:
      f32[..., frames, n_fft] with ``frames = 1 + (samples - n_fft) // hop_length``.
    """
    n_frames = 1 + (x.shape[-1] - n_fft) // hop_length
    if n_fft % hop_length == 0:
        r = n_fft // hop_length
        n_blocks = n_frames + r - 1
        blocks = x[..., : n_blocks * hop_length].reshape(*x.shape[:-1], n_blocks, hop_length)
        # frame f = blocks f .. f+r-1 laid end to end: [..., frames, r, hop] -> [..., frames, n_fft]
        parts = [blocks[..., j : j + n_frames, :] for j in range(r)]
        return jnp.stack(parts, axis=-2).reshape(*x.shape[:-1], n_frames, n_fft)
    idx = np.arange(n_fft)[None, :] + hop_length * np.arange(n_frames)[:, None]
    return x[..., idx]


def overlap_add(frames: jnp.ndarray, hop_length: int) -> jnp.ndarray:
    """Sum overlapping frames back into a signal (the adjoint of :func:`frame`).

    Args:
      frames: f32[..., frames, n_fft].
    Returns:
      f32[..., n_fft + hop_length * (frames - 1)].
    """
    n_frames, n_fft = frames.shape[-2:]
    lead = frames.shape[:-2]
    length = n_fft + hop_length * (n_frames - 1)
    if n_fft % hop_length == 0:
        r = n_fft // hop_length
        parts = frames.reshape(*lead, n_frames, r, hop_length)
        # block b of the output sums part j of frame b - j: r shifted, strided adds.
        pad = [(0, 0)] * len(lead)
        out = sum(
            jnp.pad(parts[..., j, :], pad + [(j, r - 1 - j), (0, 0)]) for j in range(r)
        )  # [..., frames + r - 1, hop]
        return out.reshape(*lead, length)
    idx = np.arange(n_fft)[None, :] + hop_length * np.arange(n_frames)[:, None]
    out = jnp.zeros((*lead, length), frames.dtype)
    return out.at[..., idx].add(frames)


def window_sumsquare(window: np.ndarray, n_frames: int, hop_length: int) -> np.ndarray:
    """Sum of squared, shifted windows: f32[n_fft + hop * (n_frames - 1)] (NumPy, trace time)."""
    n_fft = window.shape[0]
    out = np.zeros(n_fft + hop_length * (n_frames - 1), np.float64)
    sq = window.astype(np.float64) ** 2
    for f in range(n_frames):
        out[f * hop_length : f * hop_length + n_fft] += sq
    return out.astype(np.float32)


def stft(
    x: jnp.ndarray,
    n_fft: int,
    hop_length: int,
    *,
    win_length: int | None = None,
    center: bool = True,
    pad_mode: str = "constant",
) -> jnp.ndarray:
    """Short-time Fourier transform with librosa's conventions.

    Args:
      x: f32[..., samples] signal (any leading batch axes).
      n_fft: FFT size in samples (1024 is about 46 ms at 22.05 kHz).
      hop_length: samples between frames (256 is about 11.6 ms at 22.05 kHz).
      win_length: Hann window length (<= n_fft); None means n_fft.
      center: pad n_fft // 2 on each side so frame f is centred on sample f * hop.
      pad_mode: "constant" (zeros, librosa's default) or "reflect".
    Returns:
      complex64[..., n_fft // 2 + 1, frames].
    """
    win_length = check_params(n_fft, hop_length, win_length)
    if pad_mode not in PAD_MODES:
        raise ParamError(f"pad_mode={pad_mode!r} is not supported; choose one of {PAD_MODES}")
    x = jnp.asarray(x, jnp.float32)
    if center:
        pad = [(0, 0)] * (x.ndim - 1) + [(n_fft // 2, n_fft // 2)]
        if pad_mode == "reflect" and x.shape[-1] <= n_fft // 2:
            raise ParamError(
                f"pad_mode='reflect' needs more than n_fft // 2 = {n_fft // 2} samples, "
                f"got {x.shape[-1]}; use pad_mode='constant' or a smaller n_fft"
            )
        x = jnp.pad(x, pad, mode=pad_mode)
    if x.shape[-1] < n_fft:
        raise ParamError(
            f"signal of {x.shape[-1]} samples (after padding) is shorter than n_fft={n_fft}; "
            "use center=True, a longer signal or a smaller n_fft"
        )
    window = jnp.asarray(hann_window(win_length, n_fft))
    frames = frame(x, n_fft, hop_length) * window  # [..., frames, n_fft]
    spec = jnp.fft.rfft(frames, n=n_fft, axis=-1)  # [..., frames, n_fft // 2 + 1]
    return jnp.swapaxes(spec, -1, -2).astype(jnp.complex64)


def istft(
    X: jnp.ndarray,
    hop_length: int,
    *,
    n_fft: int | None = None,
    win_length: int | None = None,
    center: bool = True,
    length: int | None = None,
) -> jnp.ndarray:
    """Inverse STFT by weighted overlap-add, with librosa's conventions.

    Args:
      X: complex[..., n_fft // 2 + 1, frames].
      hop_length: samples between frames, as used by :func:`stft`.
      n_fft: FFT size; None means ``2 * (bins - 1)``.
      win_length: Hann window length; None means n_fft.
      center: undo the centre padding of :func:`stft`.
      length: output length in samples (trimmed or zero-padded); None gives
        ``hop_length * (frames - 1)`` samples when centred.
    Returns:
      f32[..., samples].
    """
    n_bins, n_frames = X.shape[-2:]
    n_fft = 2 * (n_bins - 1) if n_fft is None else n_fft
    if n_fft // 2 + 1 != n_bins:
        raise ParamError(f"n_fft={n_fft} implies {n_fft // 2 + 1} bins but X has {n_bins}; pass n_fft=None")
    win_length = check_params(n_fft, hop_length, win_length)
    window = hann_window(win_length, n_fft)
    frames = jnp.fft.irfft(jnp.swapaxes(X, -1, -2), n=n_fft, axis=-1) * window
    y = overlap_add(frames.astype(jnp.float32), hop_length)
    wss = window_sumsquare(window, n_frames, hop_length)
    y = y * jnp.asarray(_safe_reciprocal(wss))
    return trim(y, n_fft, center, length)


def _safe_reciprocal(wss: np.ndarray) -> np.ndarray:
    """1 / wss where wss > float32 tiny, else 1 (librosa leaves those samples undivided)."""
    tiny = np.finfo(np.float32).tiny
    return np.where(wss > tiny, 1.0 / np.maximum(wss, tiny), 1.0).astype(np.float32)


def trim(y: jnp.ndarray, n_fft: int, center: bool, length: int | None) -> jnp.ndarray:
    """Cut an overlap-added signal f32[..., n_fft + hop * (frames - 1)] to its output length."""
    start = n_fft // 2 if center else 0
    if length is None:
        return y[..., start : y.shape[-1] - start]
    y = y[..., start : start + length]
    if y.shape[-1] < length:
        y = jnp.pad(y, [(0, 0)] * (y.ndim - 1) + [(0, length - y.shape[-1])])
    return y


def n_frames(samples: int, n_fft: int, hop_length: int, center: bool = True) -> int:
    """Number of STFT frames for a signal of ``samples`` samples."""
    padded = samples + (2 * (n_fft // 2) if center else 0)
    return 1 + (padded - n_fft) // hop_length
