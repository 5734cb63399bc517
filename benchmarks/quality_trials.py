"""Quick experiment measures at a checkpoint: speckle (frame-to-frame squared log-mel change), silence floor
(generated log-mel level in the frames where the matched real note is in its quietest 20 %), peak, and the
x0 prediction's speckle at the first sampler step. 24 notes: 6 instruments x 4 pitches, 1.5 s, euler 16, cfg 2.

Usage: python benchmarks/quality_trials.py MODEL_OR_WORKDIR CACHE   (CACHE: the whole-note cache, range stats)
Prints one JSON line; benchmarks/quality-trials.json holds the trials of BENCHMARKS.md.
"""
import sys, json, numpy as np, jax, jax.numpy as jnp
from audiox_jax.generator import load_pipeline
from audiox_jax import pipeline
from audiox_jax.data.cache import load_cache
DB = 10 / np.log(10)
name, cache_dir = sys.argv[1], sys.argv[2]
pipe = load_pipeline(name)
m = pipe.model
cache = load_cache(cache_dir)
vocab = cache.manifest.vocab
rows = []
for inst in ["piano", "guitar", "strings", "brass", "flute", "organ"]:
    for pitch in ["060", "067", "072", "079"]:
        rows.append((vocab["instrument"].index(inst), vocab["pitch"].index(pitch)))
rows = np.array(rows)
# matched real: velocity-100 note of each (first match)
real = []
for r in rows:
    hit = np.flatnonzero(np.all(cache.labels == r, axis=1))
    real.append(cache.mels[hit[len(hit) // 2]])
real = np.stack(real)
ids = np.stack([[pipe.label_id("instrument", vocab["instrument"][a]), pipe.label_id("pitch", vocab["pitch"][b])] for a, b in rows])
cond = {"labels": jnp.asarray(ids)}
if m.config.model.length_cond:
    cond["length"] = jnp.full((len(ids),), real.shape[-1], jnp.float32)
out = pipeline.generate_jit(m.params, jax.random.key(0), cond, config=m.config, stats=m.stats, seconds=1.5,
                            cfg=jnp.float32(2.0), return_trajectory=True)
gen = np.asarray(out.log_mel)[..., :real.shape[-1]]
x0first = np.asarray(pipeline.to_log_mel(out.trajectory_x0[0][..., :real.shape[-1]], m.stats, m.config.audio))
speck = lambda a: float(np.mean(np.diff(a, axis=-1) ** 2))
energy = real.mean(axis=1)  # [B, frames]
q = np.quantile(energy, 0.2, axis=1, keepdims=True)
quiet = energy <= q
floor_gen = float(np.mean([g.mean(axis=0)[qm].mean() for g, qm in zip(gen, quiet)])) * DB
floor_real = float(np.mean([r.mean(axis=0)[qm].mean() for r, qm in zip(real, quiet)])) * DB
res = {"model": name, "speckle_gen": speck(gen), "speckle_real": speck(real), "speckle_first_x0": speck(x0first),
       "floor_gen_db": floor_gen, "floor_real_db": floor_real, "floor_diff_db": floor_gen - floor_real,
       "peak_max": float(np.abs(np.asarray(out.audio)).max()), "peak_median": float(np.median(np.abs(np.asarray(out.audio)).max(axis=1))),
       "logmel_max": float(gen.max()), "real_logmel_max": float(real.max()),
       "mean_abs_err_meanspec_db": float(np.mean(np.abs(gen.mean(-1) - real.mean(-1)))) * DB}
print(json.dumps(res))
