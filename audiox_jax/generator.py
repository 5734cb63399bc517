"""The user-facing generation API: ``load_pipeline(model).generate(instrument="piano", pitch="C4")``.

A :class:`Pipeline` holds a trained model (params, config, normaliser, label vocabulary)
and turns label *names* into ids, audio files into arrays and results into files. Every
call runs ``pipeline.generate`` as one compiled program; programs are cached per
(length, sampler, steps, batch) in memory and, with :func:`enable_compilation_cache`,
on disk, so a second process starts fast.

Models: "default" is the model shipped inside the package (``audiox_jax/assets/default``);
any other string is a model folder written by ``modelio.save_for_generation`` (for example
``training.checkpoint.export_for_generation``) or a training workdir (its latest checkpoint).
"""

from __future__ import annotations

import dataclasses
import os
import time
from typing import Iterator, Mapping, Sequence

import numpy as np
import jax
import jax.numpy as jnp

from audiox_jax import modelio, pipeline
from audiox_jax.errors import ParamError

ASSETS = os.path.join(os.path.dirname(__file__), "assets")
BUILTIN = {"default": os.path.join(ASSETS, "default"), "fast": os.path.join(ASSETS, "fast")}


def enable_compilation_cache(path: str | None = None) -> str:
    """Turn on JAX's persistent compilation cache (default ``$AUDIOX_JAX_CACHE`` or
    ``~/.cache/audiox-jax/xla``) so a second invocation reuses compiled programs."""
    path = path or os.environ.get("AUDIOX_JAX_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "audiox-jax", "xla")
    os.makedirs(path, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", path)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    return path


@dataclasses.dataclass(frozen=True)
class Result:
    """audio: f32[B, samples]; log_mel: f32[B, n_mels, frames]; labels: the names used per sample;
    seconds of audio each; wall time of the call and its real-time factor (wall / audio seconds);
    nfe: network evaluations per sample."""

    audio: np.ndarray
    log_mel: np.ndarray
    sr: int
    labels: tuple[dict, ...]
    seconds: float
    wall_s: float
    rtf: float
    nfe: int


def resolve_model(model: str) -> str:
    """A model name or path -> a model folder; raises naming the choices."""
    if model in BUILTIN:
        path = BUILTIN[model]
        if not os.path.isfile(os.path.join(path, modelio.MODEL)):
            raise ParamError(
                f"the built-in model {model!r} is not in this installation ({path} is missing); "
                "train one with `audiox-jax train` and pass --checkpoint WORKDIR_OR_MODEL_DIR"
            )
        return path
    if not os.path.exists(model):
        raise ParamError(f"model {model!r} is neither a built-in model {sorted(BUILTIN)} nor an existing path; "
                         "pass a model folder or a training --workdir")
    if os.path.isfile(os.path.join(model, modelio.MODEL)):
        return model
    if os.path.isdir(os.path.join(model, "checkpoints")):
        return model  # a training workdir: exported on load
    raise ParamError(f"{model!r} holds neither {modelio.MODEL} (an exported model) nor checkpoints/ (a training workdir)")


def load_pipeline(model: str = "default") -> "Pipeline":
    """Load a model by name ("default", "fast"), model folder, or training workdir."""
    path = resolve_model(model)
    if os.path.isfile(os.path.join(path, modelio.MODEL)):
        return Pipeline(modelio.load_for_generation(path))
    import tempfile

    from audiox_jax.training.checkpoint import export_for_generation

    with tempfile.TemporaryDirectory() as tmp:
        return Pipeline(modelio.load_for_generation(export_for_generation(path, tmp)))


def _midi(value) -> int | None:
    from audiox_jax.data.render import note_to_midi

    try:
        return note_to_midi(str(value))
    except ParamError:
        return None


def default_seconds(config) -> float:
    """The length a model makes when none is asked for: its training items' length
    (``data.max_seconds`` for whole files, else ``data.clip_seconds``)."""
    return float(config.data.max_seconds if config.data.whole_files else config.data.clip_seconds)


def default_length(model: modelio.GenerationModel, ids: np.ndarray, frames: int,
                   seconds: float | None = None) -> np.ndarray:
    """Content length f32[B] in frames for a length-conditioned model, at most ``frames``.

    ``seconds`` given: that many seconds. Else the median length of the training sounds with the
    same labels (``model.lengths["by_labels"]``), falling back to the median over all of them,
    and to ``frames`` for a model saved without lengths.
    """
    ac = model.config.audio
    if seconds is not None:
        if not seconds > 0:
            raise ParamError(f"length={seconds} must be > 0 seconds")
        want = np.full(len(ids), ac.frames(int(round(seconds * ac.sr))), np.float32)
    else:
        table = model.lengths or {}
        by, overall = table.get("by_labels", {}), table.get("frames", frames)
        want = np.array([by.get(",".join(str(int(v)) for v in row), overall) for row in ids], np.float32)
    return np.clip(want, 1, frames)


class Pipeline:
    """A loaded model and the generate call, with label names, files and timing handled."""

    def __init__(self, model: modelio.GenerationModel):
        self.model = model
        self.config = model.config
        self.sr = model.config.audio.sr
        self.label_names = tuple(n for n, _ in model.config.model.labels)

    # ------------------------------------------------------------------ labels

    def label_id(self, name: str, value) -> int:
        """Class id of ``value`` for label ``name`` (exact vocabulary match, or the same pitch
        for note-like labels: "C4", 60 and "060" all name MIDI note 60)."""
        if name not in self.label_names:
            raise ParamError(f"unknown label {name!r}; this model knows {list(self.label_names)}")
        vocab = self.model.vocab[name]
        if value is None:
            return -1
        if str(value) in vocab:
            return vocab.index(str(value))
        midi = _midi(value)
        if midi is not None:
            for i, v in enumerate(vocab):
                if _midi(v) == midi:
                    return i
        shown = ", ".join(vocab[:60]) + (" ..." if len(vocab) > 60 else "")
        raise ParamError(f"{name}={value!r} is not known to this model; valid {name} values: {shown}")

    def label_ids(self, labels: Mapping[str, object] | None) -> np.ndarray:
        """``{"instrument": "piano", "pitch": "C4"}`` -> i32[n_labels]; a missing label is -1 (unconditional)."""
        labels = dict(labels or {})
        unknown = [k for k in labels if k not in self.label_names]
        if unknown:
            raise ParamError(f"unknown label(s) {unknown}; this model knows {list(self.label_names)}")
        return np.array([self.label_id(n, labels.get(n)) for n in self.label_names], np.int32)

    def _conditioning(self, labels, batch: int, frames: int | None = None,
                      length: float | None = None) -> tuple[np.ndarray, dict | None]:
        """``(ids i32[B, n_labels], cond)``: one label dict repeated ``batch`` times, or one clip per
        dict of a list; ``cond`` is None for an unconditional model without length conditioning.
        Length-conditioned models get ``cond["length"]``: ``length`` seconds, or by default the
        typical length of a training sound with these labels (:func:`default_length`), at most
        ``frames`` (the whole request: what is left after the sound is silence)."""
        label_list = list(labels) if isinstance(labels, (list, tuple)) else [labels] * batch
        if not label_list:
            raise ParamError("labels= is an empty list; pass at least one label dict")
        ids = np.stack([self.label_ids(l) for l in label_list])  # [B, n_labels]
        cond = {"labels": jnp.asarray(ids)} if self.label_names else {}
        if self.config.model.length_cond and frames is not None:
            cond["length"] = jnp.asarray(default_length(self.model, ids, frames, length), jnp.float32)
        elif length is not None:
            raise ParamError("length= needs a length-conditioned model (model.length_cond, trained on whole "
                             "files); this one makes sound over the whole request: use seconds=")
        return ids, (cond or None)

    # ------------------------------------------------------------------ generate

    def generate(
        self,
        labels: Mapping[str, object] | Sequence[Mapping[str, object]] | None = None,
        *,
        seconds: float | None = None,
        batch: int = 1,
        seed: int = 0,
        sampler: str | None = None,
        steps: int | None = None,
        schedule: str | None = None,
        cfg: float | None = None,
        cfg_rescale: float = 0.0,
        init_audio: np.ndarray | str | None = None,
        mask: np.ndarray | None = None,
        continue_audio: bool = False,
        strength: float | None = None,
        length: float | None = None,
    ) -> Result:
        """Generate ``batch`` clips (or one per entry of a list of label dicts).

        labels: {"instrument": "piano", "pitch": "C4"} (names from the model's vocabulary), or a
          list of such dicts (one clip each). seconds: clip length (None: the length the model
          was trained on, :func:`default_seconds`). length: length-conditioned models, the
          sound's own length in seconds (None: the typical length of a training sound with
          these labels); the rest of ``seconds`` is silence. seed: sample b uses
          fold_in(key(seed), b). sampler/steps/schedule/cfg: None = the model config's sampling defaults
          (cfg=1 disables guidance). init_audio: array or file for audio-to-audio, with
          ``continue_audio=True`` (continue it), ``mask`` (f32[model_frames], 1 = keep) or
          ``strength`` (variation, 0..1).
        """
        seconds = default_seconds(self.config) if seconds is None else float(seconds)
        samples, frames, model_frames = pipeline.shapes(self.config, seconds)
        ids, cond = self._conditioning(labels, batch, frames, length)
        sc = self.config.sampling
        cfg = sc.cfg if cfg is None else float(cfg)
        B = ids.shape[0]
        kwargs = {}
        if init_audio is not None:
            y = self._audio_input(init_audio, samples)
            kwargs["init_audio"] = jnp.asarray(y)
            if continue_audio:
                kwargs["mask"] = pipeline.continuation_mask(len(y), self.config, model_frames)
            elif mask is not None:
                kwargs["mask"] = jnp.asarray(mask, jnp.float32)
            elif strength is not None:
                kwargs["strength"] = jnp.float32(strength)
            else:
                raise ParamError("init_audio needs continue_audio=True, a mask, or a strength (variation)")
        t0 = time.perf_counter()
        out = pipeline.generate_jit(
            self.model.params, jax.random.key(seed), cond, config=self.config, stats=self.model.stats,
            seconds=float(seconds), batch=None if cond else B, sampler=sampler, steps=steps, schedule=schedule,
            cfg=pipeline.guidance_scale(cfg, self.config),
            cfg_rescale=jnp.float32(cfg_rescale), **kwargs,
        )
        audio = np.asarray(jax.block_until_ready(out.audio))
        wall = time.perf_counter() - t0
        names = tuple({n: (self.model.vocab[n][i] if i >= 0 else None) for n, i in zip(self.label_names, row)}
                      for row in ids)
        return Result(audio, np.asarray(out.log_mel), self.sr, names, float(seconds), wall,
                      wall / (seconds * B), pipeline.nfe(self.config, sampler, steps))

    def generate_stream(
        self,
        labels: Mapping[str, object] | Sequence[Mapping[str, object]] | None = None,
        *,
        chunks: int = 4,
        chunk_seconds: float | None = None,
        overlap_seconds: float = 0.25,
        batch: int = 1,
        seed: int = 0,
        sampler: str | None = None,
        steps: int | None = None,
        schedule: str | None = None,
        cfg: float | None = None,
    ) -> Iterator[np.ndarray]:
        """Generate a stream of ``chunks`` chunks and yield its audio as it is made: f32[B, n] pieces
        that, concatenated, are the stream (``chunks * (chunk - overlap) + overlap`` seconds).

        Every chunk is one call of the same compiled program. Chunk k > 0 continues the last
        ``overlap_seconds`` of chunk k-1 (in-graph inpainting: those mel frames are kept and
        Griffin-Lim starts from their phase, so both sides are coherent), and the overlap is
        cross-faded linearly, so the seam has no jump. Chunk k uses ``fold_in(key(seed), k)``.
        """
        sc = default_seconds(self.config) if chunk_seconds is None else float(chunk_seconds)
        sr = self.sr
        n, ov = int(round(sc * sr)), int(round(overlap_seconds * sr))
        if not 0 < ov < n // 2:
            raise ParamError(f"overlap_seconds={overlap_seconds} must be in (0, chunk_seconds/2 = {sc / 2})")
        if chunks < 1:
            raise ParamError(f"chunks={chunks} must be >= 1")
        _, frames, model_frames = pipeline.shapes(self.config, sc)
        ids, cond = self._conditioning(labels, batch, frames,  # a stream's sound never ends
                                       sc if self.config.model.length_cond else None)
        B = ids.shape[0]
        cfg = self.config.sampling.cfg if cfg is None else float(cfg)
        keep = jnp.asarray(pipeline.continuation_mask(ov, self.config, model_frames))
        fade = ((np.arange(ov) + 0.5) / ov).astype(np.float32)  # linear: the two sides are coherent
        prompt, tail = np.zeros((B, ov), np.float32), None
        for k in range(chunks):
            out = pipeline.generate_jit(
                self.model.params, jax.random.fold_in(jax.random.key(seed), k), cond, config=self.config,
                stats=self.model.stats, seconds=sc, batch=None if cond else B, sampler=sampler, steps=steps,
                schedule=schedule, cfg=pipeline.guidance_scale(cfg, self.config),
                init_audio=jnp.asarray(prompt), mask=keep if k else jnp.zeros_like(keep),
            )
            audio = np.asarray(out.audio)  # [B, n]
            if tail is not None:
                yield tail * (1.0 - fade) + audio[:, :ov] * fade  # the seam, cross-faded
            yield audio[:, ov if tail is not None else 0 : n - ov]
            tail = prompt = audio[:, n - ov :]
        yield tail

    def _audio_input(self, audio, samples: int) -> np.ndarray:
        from audiox_jax.audio import load

        y = load(audio, self.sr)[0] if isinstance(audio, (str, os.PathLike)) else np.asarray(audio, np.float32)
        if y.ndim != 1:
            raise ParamError(f"init_audio must be mono f32[samples], got shape {y.shape}")
        if len(y) > samples:
            raise ParamError(f"init_audio is {len(y) / self.sr:.2f} s, longer than the {samples / self.sr:.2f} s "
                             "to generate; ask for more seconds or trim it")
        return y
