"""`audiox-jax bench all --quick` smoke test: every suite runs, the JSON is complete, compare works.

No speed assertions here (speed lives in BENCHMARKS.md); only that each row is a real
measurement and the quality columns agree between implementations.
"""

import json

from audiox_jax import bench, cli


def test_bench_all_quick_writes_json_and_compares(tmp_path, capsys):
    path = tmp_path / "run.json"
    assert cli.main(["bench", "all", "--quick", "--json", str(path)]) == 0
    result = json.loads(path.read_text())
    assert {"backend", "device", "jax", "jaxlib", "librosa", "date"} <= set(result["env"])
    rows = {r["name"]: r for r in result["rows"]}
    assert {r["suite"] for r in result["rows"]} == {"dsp", "generate", "train", "realtime"}
    timed = [r for r in result["rows"] if "skipped" not in r]
    assert all(r["median_s"] > 0 and r["min_s"] <= r["median_s"] <= r["max_s"] for r in timed)
    # same magnitude, same initial phase, same algorithm: the same spectral convergence as librosa
    assert abs(rows["griffin-lim jax fast 32it"]["spectral_convergence"]
               - rows["griffin-lim librosa 32it"]["spectral_convergence"]) < 1e-3
    assert rows["mel-inversion jax FISTA 32it"]["rel_residual"] < rows["mel-inversion librosa (L-BFGS-B NNLS)"]["rel_residual"]
    gen = [r for r in timed if r["name"].startswith("generate ")]
    assert gen and all(r["rtf"] > 0 and r["nfe"] >= 1 and r["compile_s"] > 0 for r in gen)
    train = [r for r in timed if r["name"].startswith("train step")]
    assert train and all(0 < r["mfu"] < 1.5 and r["tokens_per_s"] > 0 for r in train)
    # few-step latency: the shipped fast model at 1 and 2 steps, split into model and vocoder
    rt = [r for r in timed if r["suite"] == "realtime"]
    assert [r["nfe"] for r in rt] == [1, 2]
    for r in rt:
        assert 0 < r["model_ms"] < 1e3 * r["median_s"] and r["vocoder_ms"] > 0 and 0 < r["model_share"] < 1
    capsys.readouterr()
    assert cli.main(["bench", "--compare", str(path), str(path)]) == 0
    out = capsys.readouterr().out
    assert "B/A" in out
    line = next(l for l in out.splitlines() if l.startswith("griffin-lim jax fast 32it"))
    assert line.split()[-1] == "1"  # a run compared with itself
    assert bench.format_table(result["rows"]).count("\n") == len(result["rows"])
