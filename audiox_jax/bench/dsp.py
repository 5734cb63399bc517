"""`audiox-jax bench dsp`: log-mel, mel inversion and Griffin-Lim, JAX against librosa (and torch GLA).

Every implementation gets the same input: a ``music_like`` clip (``seconds`` of audio at the
default 22.05 kHz), the same magnitude and the same initial Griffin-Lim phase, so the
quality columns (dB error, NNLS residual, spectral convergence) compare like with like.
torch is timed in a fresh subprocess (:func:`torch_gla_row`).
"""

from __future__ import annotations

import importlib.util
import inspect
import subprocess
import sys
import tempfile

import jax
import jax.numpy as jnp
import librosa
import numpy as np

from audiox_jax import audio
from audiox_jax.bench.harness import row, skipped, time_calls, time_jax
from audiox_jax.data.synthetic import music_like

TORCH_MISSING = "torch is not installed (pip install 'audiox-jax[torch]')"


def bench_dsp(*, seconds: float = 10.0, repeats: int = 5, batch: int = 16, quick: bool = False) -> list[dict]:
    """Log-mel, mel inversion and Griffin-Lim: JAX vs librosa (and torch GLA when installed).

    seconds: clip length (s); batch: clips in the batched rows; quick: 2 s, 2 repeats, batch 4.
    """
    if quick:
        seconds, repeats, batch = 2.0, 2, 4
    cfg = audio.AudioConfig()
    sr, n_fft, hop = cfg.sr, cfg.n_fft, cfg.hop_length
    y = music_like(seconds, sr)
    ys = np.stack([np.roll(y, 997 * i) for i in range(batch)])
    rows = []

    # log-mel: one clip and a batch
    lm_ref = lambda x: librosa.power_to_db(
        librosa.feature.melspectrogram(y=x, sr=sr, n_fft=n_fft, hop_length=hop, n_mels=cfg.n_mels)
    )
    ours_lm = lambda x: audio.power_to_db(audio.mel(x, cfg))
    t_lib1 = time_calls(lambda: lm_ref(y), repeats=repeats)
    t_jax1, _ = time_jax(ours_lm, jnp.asarray(y), repeats=repeats)
    t_libB = time_calls(lambda: [lm_ref(x) for x in ys], repeats=repeats)
    t_jaxB, outB = time_jax(ours_lm, jnp.asarray(ys), repeats=repeats)
    err = float(np.max(np.abs(np.asarray(outB[0]) - lm_ref(ys[0]))))
    rows += [
        row("log-mel librosa b1", t_lib1, audio_s=seconds),
        row("log-mel jax b1", t_jax1, audio_s=seconds, speedup_vs_librosa=t_lib1["median_s"] / t_jax1["median_s"]),
        row(f"log-mel librosa b{batch}", t_libB, audio_s=seconds * batch),
        row(f"log-mel jax b{batch}", t_jaxB, audio_s=seconds * batch, max_abs_db_err=err,
            speedup_vs_librosa=t_libB["median_s"] / t_jaxB["median_s"]),
    ]

    # mel -> linear inversion (one clip)
    mel = librosa.feature.melspectrogram(y=y, sr=sr, n_fft=n_fft, hop_length=hop, n_mels=cfg.n_mels)
    fb = cfg.mel_basis
    t_lib = time_calls(lambda: librosa.feature.inverse.mel_to_stft(mel, sr=sr, n_fft=n_fft), repeats=max(1, repeats // 2), warmup=0)
    S_lib = librosa.feature.inverse.mel_to_stft(mel, sr=sr, n_fft=n_fft)
    res = lambda S: float(np.linalg.norm(fb @ np.asarray(S) ** 2 - mel) / np.linalg.norm(mel))
    rows.append(row("mel-inversion librosa (L-BFGS-B NNLS)", t_lib, audio_s=seconds, rel_residual=res(S_lib)))
    for iters in (16, 32):
        t, S = time_jax(lambda m, it=iters: audio.mel_to_linear(m, fb, n_iter=it), jnp.asarray(mel), repeats=repeats)
        rows.append(row(f"mel-inversion jax FISTA {iters}it", t, audio_s=seconds, rel_residual=res(S),
                        speedup_vs_librosa=t_lib["median_s"] / t["median_s"]))

    # Griffin-Lim, 32 iterations, same magnitude and same initial phase for all
    S = np.abs(librosa.stft(y, n_fft=n_fft, hop_length=hop))
    phase = (2 * np.pi * np.random.default_rng(0).random(S.shape)).astype(np.float32)
    sc = lambda out: float(audio.spectral_convergence(S, jnp.asarray(out), n_fft=n_fft, hop_length=hop))
    rng_kw = "rng" if "rng" in inspect.signature(librosa.griffinlim).parameters else "random_state"
    lib_gla = lambda: librosa.griffinlim(S, n_iter=32, hop_length=hop, n_fft=n_fft, length=len(y),
                                         **{rng_kw: np.random.default_rng(0)})
    t_lib = time_calls(lib_gla, repeats=repeats)
    rows.append(row("griffin-lim librosa 32it", t_lib, audio_s=seconds, spectral_convergence=sc(lib_gla())))
    for method in ("fast", "accelerated"):
        fn = lambda S, p, m=method: audio.griffin_lim(S, n_fft=n_fft, hop_length=hop, n_iter=32, init_phase=p,
                                                      length=len(y), method=m)
        t, out = time_jax(fn, jnp.asarray(S), jnp.asarray(phase), repeats=repeats)
        rows.append(row(f"griffin-lim jax {method} 32it", t, audio_s=seconds, spectral_convergence=sc(out),
                        speedup_vs_librosa=t_lib["median_s"] / t["median_s"]))
    tB, _ = time_jax(lambda S, p: audio.griffin_lim(S, n_fft=n_fft, hop_length=hop, n_iter=32, init_phase=p),
                     jnp.asarray(np.stack([S] * batch)), jnp.asarray(np.stack([phase] * batch)), repeats=max(1, repeats // 2))
    rows.append(row(f"griffin-lim jax fast 32it b{batch}", tB, audio_s=seconds * batch))
    # the floor: 32 rfft+irfft pairs over the same frames, nothing else
    X = jnp.ones((S.shape[1], S.shape[0]), jnp.complex64)
    floor = lambda X: jax.lax.scan(lambda c, _: (jnp.fft.rfft(jnp.fft.irfft(c, n=n_fft)), None), X, None, length=32)[0]
    t_floor, _ = time_jax(floor, X, repeats=repeats)
    rows.append(row("fft floor: 32 irfft+rfft pairs", t_floor, audio_s=seconds))
    for r in rows:
        if r["name"].startswith("griffin-lim jax") and f"b{batch}" not in r["name"]:
            r["x_fft_floor"] = r["median_s"] / t_floor["median_s"]
    rows.append(torch_gla_row(S, phase, n_fft=n_fft, hop=hop, length=len(y), repeats=repeats, audio_s=seconds, sc=sc))
    return rows


def torch_gla_row(S, phase, *, n_fft, hop, length, repeats, audio_s, sc) -> dict:
    """Time torch GLA in a fresh subprocess: in-process, XLA's CPU thread pool slows torch ~10x.

    S, phase: f32[bins, frames] magnitude and initial phase (radians); length: output samples;
    sc: audio -> spectral convergence against S. A skipped row when torch is not installed.
    """
    if importlib.util.find_spec("torch") is None:
        return skipped("griffin-lim torch", TORCH_MISSING)
    with tempfile.TemporaryDirectory() as tmp:
        path = f"{tmp}/io.npz"
        np.savez(path, S=S, phase=phase, cfg=np.array([n_fft, hop, length, repeats]))
        code = "import sys; from audiox_jax.bench.dsp import _torch_worker; _torch_worker(sys.argv[1])"
        subprocess.run([sys.executable, "-c", code, path], check=True, timeout=600)
        res = np.load(path + ".out.npz")
        timing = {k: float(res[k]) for k in ("median_s", "min_s", "max_s")}
        timing["repeats"] = repeats
        return row(f"griffin-lim torch {res['version']} {res['device']} 32it", timing, audio_s=audio_s,
                   spectral_convergence=sc(res["y"]))


def _torch_worker(path: str) -> None:
    """Subprocess entry: time ``torch_ref.griffin_lim`` (librosa's fast GLA with torch.stft/istft;
    CUDA when available) on the arrays in ``path`` and write ``path + ".out.npz"``."""
    import torch  # optional: only this subprocess needs it

    from audiox_jax.bench.torch_ref import griffin_lim

    d = np.load(path)
    n_fft, hop, length, repeats = (int(v) for v in d["cfg"])
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    S, phase = (torch.as_tensor(d[k], device=dev)[None] for k in ("S", "phase"))

    def fn():
        with torch.inference_mode():
            y = griffin_lim(S, phase, n_fft=n_fft, hop_length=hop, win_length=None, n_iter=32, momentum=0.99,
                            length=length)
        if dev == "cuda":
            torch.cuda.synchronize()
        return y

    t = time_calls(fn, repeats=repeats, warmup=3)
    np.savez(path + ".out.npz", y=fn()[0].cpu().numpy(), version=torch.__version__, device=dev,
             **{k: t[k] for k in ("median_s", "min_s", "max_s")})
