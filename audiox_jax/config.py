"""Experiment configuration: frozen dataclasses, read from YAML, with dotted overrides.

A config is a tree of sections::

    audio:     AudioConfig      (the DSP front end; saved with every model)
    model:     DiTConfig        (the network; ``size: small`` expands models.dit.SIZES)
    diffusion: DiffusionConfig  (formulation and its training-time noise sampler)
    sampling:  SamplingConfig   (default sampler settings for generate / demos)
    data:      DataConfig       (cache location, clip length, batching)
    train:     TrainConfig      (optimiser, schedule, EMA, checkpoints, logging)

``load_config("configs/tiny.yaml", ["train.lr=3e-4", "model.depth=4"])`` reads a file,
applies ``section.key=value`` overrides (values parsed as YAML), and checks every key
and type: an unknown key or a wrong type raises :class:`ParamError` naming the key and
listing the valid ones. Parsing has no side effects.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any

import yaml

from audiox_jax.audio.frontend import AudioConfig
from audiox_jax.diffusion.fewstep import OBJECTIVES, VELOCITIES
from audiox_jax.diffusion.formulations import FORMULATIONS, T_SAMPLERS, get_formulation, x0_prediction
from audiox_jax.diffusion.samplers import SAMPLERS, takes_eta
from audiox_jax.diffusion.schedules import SCHEDULES
from audiox_jax.errors import ParamError
from audiox_jax.models.dit import SIZES, DiTConfig


def _choice(name: str, value, valid) -> None:
    if value not in valid:
        raise ParamError(f"{name}={value!r} is not valid; choose one of {list(valid)}")


@dataclasses.dataclass(frozen=True)
class DiffusionConfig:
    """Formulation (see audiox_jax.diffusion.formulations) and training noise levels.

    formulation: "rf" (rectified flow, default), "vp_eps", "vp_v" or "edm".
    t_sampler: "uniform", "logit_normal" (mean, std) or "shift" (shift); None = the
      formulation's own default. vp_schedule: "cosine" or "linear" (VP only).
    sigma_data: EDM's data std. cond_dropout: probability of dropping the condition in
      training, so one model learns the unconditional score for guidance.
    objective: "diffusion" (the formulation's loss), or a few-step objective, "shortcut" or
      "meanflow" (audiox_jax.diffusion.fewstep; needs formulation rf and model.interval).
    consistency_fraction: few-step objectives, the share of each batch spent on consistency
      examples (the rest is flow matching). min_interval: the shortest step they train.
      adaptive_p: the adaptive loss weight's power on consistency examples (0 = plain MSE);
      None = the objective's default: shortcut 0 (Frans et al.), meanflow 1 (Geng et al.; with
      0 it diverged here).
      meanflow_velocity: "data" (x0 - eps, the paper's) or "model" (the model's own h=0 velocity).
      substeps: shortcut, how many sub-steps of the model make one target (2 = Frans et al.).
      teacher_cfg: the guidance scale of the teacher's flow (1 = unguided): a student of the
      guided flow makes guided samples in one network call per step.
      prediction: rf only, what the network outputs: "v" (the velocity x0 - eps) or "x0" (the clean
      data, turned into a velocity by ``formulations.x0_prediction``; for DiTs whose patch is
      wider than their width, where v-prediction leaves speckle).
      teacher: distil from a trained flow model (built-in name, model folder or workdir, with
      this run's data stats): its frozen velocity makes the shortest sub-steps of the shortcut
      targets and MeanFlow's v, instead of the model's own h=0 answer. With a teacher,
      consistency_fraction may be 1 (no flow-matching examples).
    """

    formulation: str = "rf"
    t_sampler: str | None = None
    t_mean: float = 0.0
    t_std: float = 1.0
    t_shift: float = 1.0
    vp_schedule: str = "cosine"
    sigma_data: float = 0.5
    cond_dropout: float = 0.1
    objective: str = "diffusion"
    consistency_fraction: float = 0.25
    min_interval: float = 0.0078125
    adaptive_p: float | None = None
    meanflow_velocity: str = "data"
    substeps: int = 2
    teacher: str | None = None
    teacher_cfg: float = 1.0
    prediction: str = "v"

    def __post_init__(self):
        _choice("diffusion.prediction", self.prediction, ("v", "x0"))
        if self.prediction == "x0" and self.formulation != "rf":
            raise ParamError(f"diffusion.prediction='x0' is for formulation 'rf' (got {self.formulation!r}); "
                             "use prediction 'v' or formulation rf")
        _choice("diffusion.objective", self.objective, OBJECTIVES)
        _choice("diffusion.meanflow_velocity", self.meanflow_velocity, VELOCITIES)
        if self.substeps < 2:
            raise ParamError(f"diffusion.substeps={self.substeps} must be >= 2 (2 = the shortcut rule)")
        if self.adaptive_p is not None and self.adaptive_p < 0:
            raise ParamError(f"diffusion.adaptive_p={self.adaptive_p} must be >= 0 (0 = plain MSE, 1 = MeanFlow's)")
        if not 0.0 < self.consistency_fraction <= (1.0 if self.teacher else 0.999):
            raise ParamError(f"diffusion.consistency_fraction={self.consistency_fraction} must be in (0, 1) "
                             "(up to 1 with a diffusion.teacher); 0.25 is usual")
        if not 0.0 < self.min_interval < 1.0:
            raise ParamError(f"diffusion.min_interval={self.min_interval} must be in (0, 1); 1/128 = 0.0078125 is usual")

        _choice("diffusion.formulation", self.formulation, FORMULATIONS)
        _choice("diffusion.t_sampler", self.t_sampler, (None, *T_SAMPLERS))
        _choice("diffusion.vp_schedule", self.vp_schedule, ("cosine", "linear"))
        if not 0.0 <= self.cond_dropout < 1.0:
            raise ParamError(f"diffusion.cond_dropout={self.cond_dropout} must be in [0, 1)")

    def velocity_fn(self, model_fn):
        """The network as the formulation's model_fn (``prediction: x0`` wraps it into a velocity)."""
        return x0_prediction(model_fn) if self.prediction == "x0" else model_fn

    def make_formulation(self):
        """The bound ``diffusion.formulations.Formulation``."""
        if self.formulation.startswith("vp"):
            return get_formulation(self.formulation, schedule=self.vp_schedule)
        if self.formulation == "edm":
            return get_formulation(self.formulation, sigma_data=self.sigma_data)
        return get_formulation(self.formulation)

    def consistency_options(self) -> dict:
        """Keyword options for this objective's consistency loss (``diffusion.fewstep``)."""
        meanflow = self.objective == "meanflow"
        p = self.adaptive_p if self.adaptive_p is not None else (1.0 if meanflow else 0.0)
        own = {"velocity": self.meanflow_velocity} if meanflow else {"substeps": self.substeps}
        return {"min_interval": self.min_interval, "adaptive_p": p, **own}

    def loss_options(self) -> dict:
        """Keyword options for ``Formulation.loss`` (the noise-level sampler)."""
        if self.t_sampler is None:
            return {}
        return {"t_sampler": self.t_sampler, "mean": self.t_mean, "std": self.t_std, "shift": self.t_shift}


@dataclasses.dataclass(frozen=True)
class SamplingConfig:
    """Default generation settings of a model (all overridable per call; the vocoder's
    iterations are the front end's, ``audio.gla_iters`` and ``audio.nnls_iters``).

    eta: the stochasticity of "ddim" and "dpmpp_2m_sde" (None = the sampler's own default,
      0 and 1); ignored by the other samplers. cfg, cfg_rescale: guidance scale (1 = off)
      and its rescale phi in [0, 1].
    """

    sampler: str = "euler"
    steps: int = 16
    schedule: str = "karras"
    rho: float = 7.0
    shift: float = 1.0
    eta: float | None = None
    cfg: float = 2.0
    cfg_rescale: float = 0.0

    def __post_init__(self):
        _choice("sampling.sampler", self.sampler, SAMPLERS)
        _choice("sampling.schedule", self.schedule, SCHEDULES)
        if self.steps < 1:
            raise ParamError(f"sampling.steps={self.steps} must be >= 1")
        if self.eta is not None and not self.eta >= 0:
            raise ParamError(f"sampling.eta={self.eta} must be >= 0 (0 = deterministic) or null (the sampler's default)")
        if not 0.0 <= self.cfg_rescale <= 1.0:
            raise ParamError(f"sampling.cfg_rescale={self.cfg_rescale} must be in [0, 1] (0 = off)")

    def eta_for(self, sampler: str) -> float | None:
        """``eta`` for ``sampler``: None where the sampler takes none (or the config leaves it to it)."""
        return self.eta if takes_eta(sampler) else None


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """Where the prepared mel cache lives and how it is batched.

    cache: directory written by ``audiox-jax prepare``; "synthetic" uses the built-in
      synthetic set (made on the fly, for tests and demos).
    clip_seconds: clip length used by prepare (and by the synthetic set).
    whole_files: prepare keeps each file whole at its real length (its first ``max_seconds``),
      padded to ``max_seconds``; training masks the padding out of the loss, and a
      ``model.length_cond`` model learns where each sound ends. False: fixed clips.
    max_seconds: whole_files, the common padded length (and the longest sound kept).
    labels: label names the model is conditioned on (must exist in the cache); see
      audiox_jax.training.data for how they set model.labels.
    batch_size: global examples per optimiser update (over all devices and hosts).
    synthetic_size: items of the synthetic set (cache: synthetic).
    stats: "meanstd" or "range" normalisation (prepare and the synthetic set).
    """

    cache: str = "synthetic"
    clip_seconds: float = 1.0
    whole_files: bool = False
    max_seconds: float | None = None
    labels: tuple[str, ...] = ()
    batch_size: int = 32
    val_fraction: float = 0.05
    synthetic_size: int = 256
    stats: str = "meanstd"

    def __post_init__(self):
        _choice("data.stats", self.stats, ("meanstd", "range"))
        if self.whole_files and not (self.max_seconds or 0) > 0:
            raise ParamError("data.whole_files=true needs data.max_seconds > 0 (the padded length); try 2.0")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Optimisation, EMA, checkpointing and logging (see audiox_jax.training).

    steps, warmup_steps, *_every count optimiser updates; data.batch_size examples make one
    update, split into grad_accum micro-batches. *_every = 0 disables that action.
    keep: latest checkpoints kept; keep_best: also keep this many with the lowest
    validation loss (needs eval_every > 0). ema_warmup: updates over which the EMA decay
    ramps from 0 to ema_decay. parallel: "jit" (Mesh + NamedSharding, fsdp optional) or "pmap".
    init_from: start a new run from a trained model's params (a built-in name such as
    "default", a model folder or a training workdir) instead of random ones: params and EMA
    both start there, its normalisation stats are kept, and params the new model adds (the
    interval embedding of a few-step model) keep their fresh initialisation. The model config
    must match apart from ``interval``. Ignored when the workdir already holds a checkpoint.
    """

    seed: int = 0
    steps: int = 1000
    lr: float = 3e-4
    warmup_steps: int = 100
    lr_schedule: str = "cosine"
    end_lr_fraction: float = 0.1
    weight_decay: float = 0.01
    b1: float = 0.9
    b2: float = 0.99
    grad_clip: float = 1.0
    grad_accum: int = 1
    ema_decay: float = 0.999
    ema_warmup: int = 0
    parallel: str = "jit"
    fsdp: bool = False
    log_every: int = 50
    ckpt_every: int = 500
    keep: int = 3
    keep_best: int = 0
    eval_every: int = 0
    demo_every: int = 0
    init_from: str | None = None

    def __post_init__(self):
        _choice("train.parallel", self.parallel, ("jit", "pmap"))
        _choice("train.lr_schedule", self.lr_schedule, ("cosine", "constant"))
        if self.steps < 1 or self.grad_accum < 1 or self.keep < 1:
            raise ParamError("train.steps, train.grad_accum and train.keep must be >= 1")
        for name in ("keep_best", "warmup_steps", "ema_warmup", "log_every", "ckpt_every", "eval_every", "demo_every"):
            if getattr(self, name) < 0:
                raise ParamError(f"train.{name}={getattr(self, name)} must be >= 0 (0 disables it)")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ParamError(f"train.ema_decay={self.ema_decay} must be in [0, 1); 0.999 averages ~1000 updates")
        if not 0.0 < self.lr < float("inf"):  # also NaN: a negative rate ascends, zero never moves
            raise ParamError(f"train.lr={self.lr} must be a finite number > 0; 3e-4 is usual (configs/tiny.yaml: 3e-3)")
        if not 0.0 <= self.end_lr_fraction <= 1.0:
            raise ParamError(f"train.end_lr_fraction={self.end_lr_fraction} must be in [0, 1] (the cosine's end "
                             "as a fraction of train.lr; 0.1 is usual)")


@dataclasses.dataclass(frozen=True)
class Config:
    audio: AudioConfig = AudioConfig()
    model: DiTConfig = DiTConfig(**SIZES["tiny"])
    diffusion: DiffusionConfig = DiffusionConfig()
    sampling: SamplingConfig = SamplingConfig()
    data: DataConfig = DataConfig()
    train: TrainConfig = TrainConfig()

    def __post_init__(self):
        d = self.diffusion
        if d.objective != "diffusion" and d.formulation != "rf":
            raise ParamError(f"diffusion.objective={d.objective!r} needs diffusion.formulation='rf' "
                             f"(got {d.formulation!r}); few-step objectives are defined for rectified flow")
        if d.objective != "diffusion" and not self.model.interval:
            raise ParamError(f"diffusion.objective={d.objective!r} needs model.interval: true "
                             "(the network must know the step length)")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


_SECTION_TYPES = {"audio": AudioConfig, "model": DiTConfig, "diffusion": DiffusionConfig,
                  "sampling": SamplingConfig, "data": DataConfig, "train": TrainConfig}


def _check_value(where: str, value: Any, tp: Any) -> Any:
    """Check (and lightly coerce: int -> float, list -> tuple) ``value`` against annotation ``tp``."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        for arm in typing.get_args(tp):
            try:
                return _check_value(where, value, arm)
            except ParamError:
                pass
        raise ParamError(f"{where}={value!r} has the wrong type; expected {_type_name(tp)}")
    if tp is type(None):
        if value is None:
            return None
        raise ParamError(f"{where}={value!r} must be null")
    if tp is Any:
        return value
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ParamError(f"{where}={value!r} must be a list, expected {_type_name(tp)}")
        args = typing.get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_check_value(f"{where}[{i}]", v, args[0]) for i, v in enumerate(value))
        if len(args) != len(value):
            raise ParamError(f"{where}={value!r} must have {len(args)} items")
        return tuple(_check_value(f"{where}[{i}]", v, a) for i, (v, a) in enumerate(zip(value, args)))
    if tp is float:
        if isinstance(value, str):  # YAML 1.1 reads "1e-4" (no dot) as a string
            try:
                value = float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ParamError(f"{where}={value!r} must be a number")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ParamError(f"{where}={value!r} must be an integer")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ParamError(f"{where}={value!r} must be true or false")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise ParamError(f"{where}={value!r} must be a string")
        return value
    return value


def _type_name(tp) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def build_section(name: str, cls, raw: dict) -> Any:
    """Make section ``name`` of type ``cls`` from a dict, checking keys and types."""
    if not isinstance(raw, dict):
        raise ParamError(f"config section '{name}' must be a mapping, got {raw!r}")
    raw = dict(raw)
    if cls is DiTConfig and "size" in raw:
        size = raw.pop("size")
        if size not in SIZES:
            raise ParamError(f"model.size={size!r} is not one of {list(SIZES)}")
        raw = {**SIZES[size], **raw}
    hints = typing.get_type_hints(cls)
    valid = [f.name for f in dataclasses.fields(cls)]
    unknown = [k for k in raw if k not in valid]
    if unknown:
        extra = " (and model.size)" if cls is DiTConfig else ""
        raise ParamError(f"unknown key(s) {', '.join(f'{name}.{k}' for k in unknown)}; valid keys: {', '.join(valid)}{extra}")
    kwargs = {k: _check_value(f"{name}.{k}", v, hints[k]) for k, v in raw.items()}
    try:
        return cls(**kwargs)
    except TypeError as err:  # a required field is missing (DiTConfig's dim/depth/heads)
        raise ParamError(f"config section '{name}': {err}; set it or use model.size") from err


def _migrate(raw: dict) -> dict:
    """Read configs saved before the vocoder's iterations moved to ``audio`` and ``sampling.eta``
    was wired: ``sampling.gla_iters``/``nnls_iters`` become ``audio``'s (they were equal in every
    saved model), and ``sampling.eta: 0.0``, the old unread default, becomes null (the sampler's own)."""
    sampling = raw.get("sampling")
    if not isinstance(sampling, dict) or not ({"gla_iters", "nnls_iters", "eta"} & set(sampling)):
        return raw
    raw, sampling = dict(raw), dict(sampling)
    audio = dict(raw.get("audio") or {})
    for key in ("gla_iters", "nnls_iters"):
        if key in sampling:
            audio.setdefault(key, sampling.pop(key))
    if sampling.get("eta", None) == 0.0:
        sampling["eta"] = None
    raw["audio"], raw["sampling"] = audio, sampling
    return raw


def from_dict(raw: dict) -> Config:
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ParamError(f"a config must be a mapping of sections, got {type(raw).__name__}")
    raw = _migrate(raw)
    unknown = [k for k in raw if k not in _SECTION_TYPES]
    if unknown:
        raise ParamError(f"unknown config section(s) {unknown}; valid sections: {list(_SECTION_TYPES)}")
    defaults = Config()
    sections = {}
    for name, cls in _SECTION_TYPES.items():
        if name in raw:
            section = raw[name] or {}
            # A model section naming a size starts from that size, not from the default model.
            base = {} if cls is DiTConfig and "size" in section else dataclasses.asdict(getattr(defaults, name))
            sections[name] = build_section(name, cls, {**base, **section})
    return dataclasses.replace(defaults, **sections)


def apply_overrides(raw: dict, overrides: list[str] | tuple[str, ...]) -> dict:
    """Apply ``["section.key=value", ...]`` to a raw config dict (values parsed as YAML)."""
    raw = {k: dict(v or {}) for k, v in (raw or {}).items()}
    for item in overrides:
        if "=" not in item:
            raise ParamError(f"override {item!r} must look like section.key=value, e.g. train.lr=1e-4")
        path, text = item.split("=", 1)
        parts = path.strip().split(".")
        if len(parts) != 2:
            raise ParamError(f"override key {path!r} must be section.key (sections: {list(_SECTION_TYPES)})")
        section, key = parts
        if section not in _SECTION_TYPES:
            raise ParamError(f"override {item!r}: unknown section {section!r}; valid sections: {list(_SECTION_TYPES)}")
        raw.setdefault(section, {})[key] = yaml.safe_load(text)
    return raw


def load_config(path: str | None = None, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Read a YAML config (None: all defaults) and apply dotted overrides."""
    raw = {}
    if path is not None:
        try:
            with open(path) as f:
                raw = yaml.safe_load(f) or {}
        except FileNotFoundError:
            raise ParamError(f"config file {path} does not exist; see configs/ for examples") from None
        except yaml.YAMLError as err:
            raise ParamError(f"config file {path} is not valid YAML: {err}") from None
    return from_dict(apply_overrides(raw, overrides))


def to_yaml(cfg: Config) -> str:
    return yaml.safe_dump(_plain(cfg.to_dict()), sort_keys=False)


def _plain(x):
    if isinstance(x, dict):
        return {k: _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    return x
