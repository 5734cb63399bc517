"""`audiox-jax bench all --quick` smoke test: every suite runs, the JSON is complete, compare works.

No speed or timing assertions here (speed lives in BENCHMARKS.md, and a duration can be
anything on a loaded machine); only that each row carries its measurement and its columns,
and that the quality columns agree between implementations.
"""

import json
import math

from audiox_jax import bench, cli

TIMING = ("median_s", "min_s", "max_s", "repeats")


def _finite(row, keys):
    return all(isinstance(row.get(k), (int, float)) and math.isfinite(row[k]) for k in keys)


def test_bench_all_quick_writes_json_and_compares(tmp_path, capsys):
    path = tmp_path / "run.json"
    assert cli.main(["bench", "all", "--quick", "--json", str(path)]) == 0
    result = json.loads(path.read_text())
    assert {"backend", "device", "jax", "jaxlib", "librosa", "date"} <= set(result["env"])
    rows = {r["name"]: r for r in result["rows"]}
    assert {r["suite"] for r in result["rows"]} == {"dsp", "generate", "train", "realtime"}
    timed = [r for r in result["rows"] if "skipped" not in r]
    assert all(_finite(r, TIMING) for r in timed), [r["name"] for r in timed if not _finite(r, TIMING)]
    assert all(_finite(r, ("rtf", "x_realtime")) for r in timed if "audio_s" in r)
    # same magnitude, same initial phase, same algorithm: the same spectral convergence as librosa
    assert abs(rows["griffin-lim jax fast 32it"]["spectral_convergence"]
               - rows["griffin-lim librosa 32it"]["spectral_convergence"]) < 1e-3
    assert rows["mel-inversion jax FISTA 32it"]["rel_residual"] < rows["mel-inversion librosa (L-BFGS-B NNLS)"]["rel_residual"]
    gen = [r for r in timed if r["name"].startswith("generate ")]
    assert gen and all(r["nfe"] >= 1 and r["model_gflops"] > 0 and _finite(r, ("compile_s", "model_gflop_per_s"))
                       for r in gen)
    train = [r for r in timed if r["name"].startswith("train step")]
    assert train and all(r["params_m"] > 0 and _finite(r, ("mfu", "tokens_per_s", "tflop_per_s")) for r in train)
    # few-step latency: the shipped fast model at 1 and 2 steps, split into model and vocoder
    rt = [r for r in timed if r["suite"] == "realtime"]
    assert [r["nfe"] for r in rt] == [1, 2]
    assert all(_finite(r, ("model_ms", "vocoder_ms", "model_share")) for r in rt)
    assert bench.format_table(result["rows"]).count("\n") == len(result["rows"])

    # compare: a second run whose medians are exactly twice the first's shows B/A = 2
    slower = {**result, "rows": [{**r, "median_s": 2 * r["median_s"]} if "median_s" in r else r
                                 for r in result["rows"]]}
    path_b = tmp_path / "slower.json"
    path_b.write_text(json.dumps(slower))
    capsys.readouterr()
    assert cli.main(["bench", "--compare", str(path), str(path_b)]) == 0
    out = capsys.readouterr().out
    assert "B/A" in out
    lines = [l for l in out.splitlines() if l.startswith(("griffin-lim", "generate ", "train step"))]
    assert lines and all(l.split()[-1] == "2" for l in lines)
