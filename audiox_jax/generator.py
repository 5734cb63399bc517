"""The user-facing generation API: ``load_pipeline(model).generate({"instrument": "piano", "pitch": "C4"})``.

A :class:`Pipeline` holds a trained model (params, config, normaliser, label vocabulary)
and turns label *names* into ids, audio files into arrays and results into files. Every
call resolves its static settings once into a ``pipeline.SamplingSpec`` (:meth:`Pipeline.spec`:
length, batch, sampler, steps, schedule) and runs ``pipeline.generate`` as one compiled program;
programs are cached per spec in memory and, with :func:`enable_compilation_cache`, on disk, so a
second process starts fast.

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
from audiox_jax.audio.io import load
from audiox_jax.audio.pitch import note_to_midi
from audiox_jax.errors import ParamError
from audiox_jax.modelio import default_length
from audiox_jax.pipeline import SamplingSpec
from audiox_jax.training.checkpoint import load_model


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


def load_pipeline(model: str = "default") -> "Pipeline":
    """Load a model by name ("default", "fast"), model folder, or training workdir."""
    return Pipeline(load_model(model))


def _midi(value) -> int | None:
    """MIDI number of a note name ("C4", "F#3") or number ("60", "060"); None if it is neither."""
    try:
        return note_to_midi(value)
    except ParamError:
        return None


class Pipeline:
    """A loaded model and the generate call, with label names, files and timing handled."""

    def __init__(self, model: modelio.GenerationModel):
        self.model = model
        self.config = model.config
        self.model_spec = pipeline.ModelSpec.of(model.config, model.stats)
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

    def _conditioning(self, labels, batch: int, frames: int,
                      length: float | None = None) -> tuple[np.ndarray, dict | None]:
        """``(ids i32[B, n_labels], cond)``: one label dict repeated ``batch`` times, or one clip per
        dict of a list; ``cond`` is None for an unconditional model without length conditioning.
        Length-conditioned models get ``cond["length"]``: ``length`` seconds, or by default the
        typical length of a training sound with these labels (``modelio.default_length``), at most
        ``frames`` (the whole request: what is left after the sound is silence)."""
        label_list = list(labels) if isinstance(labels, (list, tuple)) else [labels] * batch
        if not label_list:
            raise ParamError("labels= is an empty list; pass at least one label dict")
        ids = np.stack([self.label_ids(l) for l in label_list])  # [B, n_labels]
        cond = {"labels": jnp.asarray(ids)} if self.label_names else {}
        if self.config.model.length_cond:
            cond["length"] = jnp.asarray(default_length(self.model, ids, frames, length), jnp.float32)
        elif length is not None:
            raise ParamError("length= needs a length-conditioned model (model.length_cond, trained on whole "
                             "files); this one makes sound over the whole request: use seconds=")
        return ids, (cond or None)

    # ------------------------------------------------------------------ generate

    def spec(self, seconds: float | None = None, *, batch: int = 1, sampler: str | None = None,
             steps: int | None = None, schedule: str | None = None) -> SamplingSpec:
        """The static settings of a call (``pipeline.sampling_spec``): None = this model's defaults."""
        return pipeline.sampling_spec(self.config, seconds=seconds, batch=batch, sampler=sampler, steps=steps,
                                      schedule=schedule)

    def prompt(self, spec: SamplingSpec, audio, *, mask=None, continue_audio: bool = False,
               strength: float | None = None) -> pipeline.AudioPrompt:
        """An audio prompt for ``spec`` (``pipeline.audio_prompt``); ``audio`` may be a file path."""
        y = load(audio, self.sr)[0] if isinstance(audio, (str, os.PathLike)) else audio
        return pipeline.audio_prompt(spec, self.config, y, mask=mask, continue_audio=continue_audio, strength=strength)

    def _run(self, key, cond, spec: SamplingSpec, cfg: float | None, cfg_rescale: float | None = None,
             prompt: pipeline.AudioPrompt | None = None):
        return pipeline.generate_jit(
            self.model.params, key, cond, model=self.model_spec, spec=spec,
            guide=pipeline.guidance(self.config, cfg, cfg_rescale), prompt=prompt,
            eta=self.config.sampling.eta_for(spec.sampler))

    def generate(
        self,
        labels: Mapping[str, object] | Sequence[Mapping[str, object]] | None = None,
        *,
        spec: SamplingSpec | None = None,
        seconds: float | None = None,
        batch: int = 1,
        seed: int = 0,
        sampler: str | None = None,
        steps: int | None = None,
        schedule: str | None = None,
        cfg: float | None = None,
        cfg_rescale: float | None = None,
        init_audio: np.ndarray | str | None = None,
        mask: np.ndarray | None = None,
        continue_audio: bool = False,
        strength: float | None = None,
        prompt: pipeline.AudioPrompt | None = None,
        length: float | None = None,
    ) -> Result:
        """Generate ``batch`` clips (or one per entry of a list of label dicts).

        labels: {"instrument": "piano", "pitch": "C4"} (names from the model's vocabulary), or a
          list of such dicts (one clip each). spec: the call's static settings (:meth:`spec`);
          or, without it, seconds (None: the length the model was trained on), sampler, steps,
          schedule (None: the model's defaults). length: length-conditioned models, the sound's
          own length in seconds (None: the typical length of a training sound with these
          labels); the rest of the clip is silence. seed: sample b uses fold_in(key(seed), b).
          cfg, cfg_rescale: None = the model's (cfg=1 disables guidance). init_audio: array or
          file for audio-to-audio, with ``continue_audio=True`` (continue it), ``mask``
          (f32[model_frames], 1 = keep) or ``strength`` (variation, 0..1); or ``prompt``, one
          made by :meth:`prompt` for this ``spec``.
        """
        n = len(labels) if isinstance(labels, (list, tuple)) else (batch if spec is None else spec.batch)
        if spec is None:
            spec = self.spec(seconds, batch=n, sampler=sampler, steps=steps, schedule=schedule)
        elif spec.batch != n or any(v is not None for v in (seconds, sampler, steps, schedule)):
            raise ParamError(f"spec= already sets the length, sampler, steps and batch ({spec.batch}); "
                             f"pass {n} label dicts or batch={spec.batch}, and no seconds/sampler/steps/schedule")
        ids, cond = self._conditioning(labels, spec.batch, spec.frames, length)
        if init_audio is not None:
            if prompt is not None:
                raise ParamError("pass init_audio= (with mask, continue_audio or strength) or prompt=, not both")
            prompt = self.prompt(spec, init_audio, mask=mask, continue_audio=continue_audio, strength=strength)
        elif mask is not None or continue_audio or strength is not None:
            raise ParamError("mask=, continue_audio= and strength= need init_audio= (the audio to edit)")
        t0 = time.perf_counter()
        out = self._run(jax.random.key(seed), cond, spec, cfg, cfg_rescale, prompt)
        audio = np.asarray(jax.block_until_ready(out.audio))
        wall = time.perf_counter() - t0
        names = tuple({n: (self.model.vocab[n][i] if i >= 0 else None) for n, i in zip(self.label_names, row)}
                      for row in ids)
        seconds = spec.samples / self.sr
        return Result(audio, np.asarray(out.log_mel), self.sr, names, seconds, wall, wall / (seconds * spec.batch),
                      spec.nfe)

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
        n_clips = len(labels) if isinstance(labels, (list, tuple)) else batch
        spec = self.spec(chunk_seconds, batch=n_clips, sampler=sampler, steps=steps, schedule=schedule)
        n, ov = spec.samples, int(round(overlap_seconds * self.sr))
        if not 0 < ov < n // 2:
            raise ParamError(f"overlap_seconds={overlap_seconds} must be in (0, chunk_seconds/2 = {n / self.sr / 2})")
        if chunks < 1:
            raise ParamError(f"chunks={chunks} must be >= 1")
        _, cond = self._conditioning(labels, spec.batch, spec.frames,  # a stream's sound never ends
                                     n / self.sr if self.config.model.length_cond else None)
        B = spec.batch
        keep = pipeline.continuation_mask(ov, self.config, spec.model_frames)
        fade = ((np.arange(ov) + 0.5) / ov).astype(np.float32)  # linear: the two sides are coherent
        prompt, tail = np.zeros((B, ov), np.float32), None
        for k in range(chunks):
            audio_prompt = pipeline.audio_prompt(spec, self.config, prompt, mask=keep if k else np.zeros_like(keep))
            out = self._run(jax.random.fold_in(jax.random.key(seed), k), cond, spec, cfg, prompt=audio_prompt)
            audio = np.asarray(out.audio)  # [B, n]
            if tail is not None:
                yield tail * (1.0 - fade) + audio[:, :ov] * fade  # the seam, cross-faded
            yield audio[:, ov if tail is not None else 0 : n - ov]
            tail = prompt = audio[:, n - ov :]
        yield tail
