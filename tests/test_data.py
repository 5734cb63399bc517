"""The data path: synthetic data set, prepare -> cache, load_cache, batch iterator and split."""

import json
import os

import numpy as np
import pytest
import soundfile as sf

from audiox_jax import audio
from audiox_jax.data import cache as cachemod
from audiox_jax.data.clips import ClipSpec, clip_offsets, cut
from audiox_jax.data.iterator import BatchIterator, split
from audiox_jax.data import prepare as prepare_mod
from audiox_jax.data.prepare import load_cache, prepare
from audiox_jax.data.synthetic import KINDS, synthetic_dataset, write_synthetic_folder
from audiox_jax.errors import AudioxError, ParamError

SR = 8000
CFG = audio.AudioConfig(sr=SR, n_fft=256, hop_length=64, n_mels=32)
CLIP = 0.5  # 4000 samples, 63 frames
SECONDS = 1.3  # -> clips at 0, 0.5 s full and 1.0 s padded (0.3 s >= 25 % of a clip)


def _prep(audio_dir, out_dir, **kw):
    kw = {"audio_cfg": CFG, "clip_seconds": CLIP, "progress": False, **kw}
    return prepare(str(audio_dir), str(out_dir), **kw)


def _write(path, y, sr=SR):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    sf.write(path, np.asarray(y, np.float32), sr, subtype="PCM_16")


@pytest.fixture
def folder(tmp_path):
    """2 files per kind (8 good 1.3 s files, 24 clips) plus 4 bad ones; returns the audio folder."""
    root = tmp_path / "audio"
    write_synthetic_folder(str(root), 2, sr=SR, seconds=SECONDS, seed=0, csv_name=None)
    (root / "tone" / "empty.wav").write_bytes(b"")
    (root / "noise_burst" / "notes.wav").write_text("these are my notes, not audio\n")
    _write(str(root / "chord" / "tiny.wav"), 0.5 * np.ones(100))
    _write(str(root / "loose.wav"), synthetic_dataset(1, sr=SR, seconds=1.0, seed=3)[0][0])
    (root / "readme.txt").write_text("ignored: not an audio extension")
    return root


# ------------------------------------------------------------------ synthetic data set


def test_synthetic_dataset_is_deterministic_and_labelled():
    a, lab, vocab = synthetic_dataset(48, sr=SR, seconds=0.5, seed=7)
    b, lab2, _ = synthetic_dataset(48, sr=SR, seconds=0.5, seed=7)
    c, _, _ = synthetic_dataset(48, sr=SR, seconds=0.5, seed=8)
    assert a.shape == (48, 4000) and a.dtype == np.float32
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)
    np.testing.assert_array_equal(synthetic_dataset(10, sr=SR, seconds=0.5, seed=7)[0], a[:10])  # prefix-stable
    assert vocab["kind"] == tuple(sorted(vocab["kind"])) == KINDS
    assert vocab["pitch"] == tuple(sorted(vocab["pitch"]))
    np.testing.assert_array_equal(np.bincount(lab["kind"]), [12] * 4)
    np.testing.assert_array_equal(np.bincount(lab["pitch"]), [8] * 6)
    pairs = {(int(k), int(p)) for k, p in zip(lab["kind"][:24], lab["pitch"][:24])}
    assert len(pairs) == 24  # every (kind, pitch) pair once in 24 items
    assert np.all(np.abs(a).max(1) <= 0.7 + 1e-6) and np.all(np.abs(a).max(1) >= 0.3 - 1e-6)


def test_synthetic_tone_sits_at_its_pitch():
    a, lab, vocab = synthetic_dataset(24, sr=SR, seconds=1.0, seed=0)
    hz = {"C3": 130.81, "G3": 196.0, "C4": 261.63, "E4": 329.63, "G4": 392.0, "C5": 523.25}
    for i in np.flatnonzero(np.asarray(vocab["kind"])[lab["kind"]] == "tone"):
        spectrum = np.abs(np.fft.rfft(a[i]))
        peak = np.fft.rfftfreq(a.shape[1], 1 / SR)[np.argmax(spectrum)]
        assert abs(peak - hz[vocab["pitch"][lab["pitch"][i]]]) < 5.0


# ------------------------------------------------------------------ clip cutting


@pytest.mark.parametrize(
    "n,clip,hop,want",
    [
        (100, 100, 100, [0]),
        (30, 100, 100, [0]),  # shorter than a clip: kept whole, padded
        (224, 100, 100, [0, 100]),  # 24 % remainder dropped
        (225, 100, 100, [0, 100, 200]),  # 25 % remainder kept
        (250, 100, 50, [0, 50, 100, 150]),  # overlap: the tail is covered by full clips
        (280, 100, 50, [0, 50, 100, 150, 200]),  # 30 uncovered samples -> one padded clip
    ],
)
def test_clip_offsets(n, clip, hop, want):
    np.testing.assert_array_equal(clip_offsets(n, clip, hop), want)


def test_cut_pads_and_records_lengths():
    y = np.arange(1, 226, dtype=np.float32)
    items, offsets, lengths = cut(y, ClipSpec(clip_seconds=0.1), sr=1000)
    assert items.shape == (3, 100)
    np.testing.assert_array_equal(lengths, [100, 100, 25])
    np.testing.assert_array_equal(items[2, :25], y[200:])
    assert np.all(items[2, 25:] == 0)
    with pytest.raises(ParamError, match="max_seconds"):
        ClipSpec(clip_seconds=1.0, keep_whole=True)
    with pytest.raises(ParamError, match="clip_seconds=0"):
        ClipSpec(clip_seconds=0)


# ------------------------------------------------------------------ prepare


def test_prepare_folder_labels_shapes_and_report(folder, tmp_path):
    out = tmp_path / "cache"
    sf.write(str(folder / "sweep" / "quiet.flac"), np.zeros(SR, np.float32), SR, subtype="PCM_16")
    sf.write(str(folder / "tone" / "nan.wav"), np.full(SR, np.nan, np.float32), SR, subtype="FLOAT")
    good = sorted(f for f in os.listdir(folder / "tone") if f.startswith("tone_"))[0]
    (folder / "tone" / "UPPER.WAV").write_bytes((folder / "tone" / good).read_bytes())  # extensions: any case
    m = _prep(folder, out, min_rms_db=-120.0)
    assert m.label_source == "folders" and m.label_names == ("label",)
    assert m.vocab == {"label": KINDS}
    assert m.n_items == 9 * 3 and m.frames == CFG.frames(4000) == 63
    skipped = m.skipped
    assert set(skipped) == {"tone/empty.wav", "noise_burst/notes.wav", "sweep/quiet.flac", "chord/tiny.wav",
                            "loose.wav", "tone/nan.wav"}
    assert "NaN" in skipped["tone/nan.wav"]
    assert "empty" in skipped["tone/empty.wav"]
    assert "not a readable audio file" in skipped["noise_burst/notes.wav"]
    assert "silent" in skipped["sweep/quiet.flac"]
    assert "too short" in skipped["chord/tiny.wav"]
    assert "sub-folder" in skipped["loose.wav"]
    report = (out / "report.txt").read_text()
    for path, reason in skipped.items():
        assert f"{path}: [" in report and reason in report
    assert "files skipped: 6" in report

    c = load_cache(str(out))
    assert c.mels.shape == (27, 32, 63) and c.mels.dtype == np.float32
    assert c.labels.shape == (27, 1) and c.labels.dtype == np.int32
    for i in range(len(c)):
        path, _ = c.source(i)
        assert KINDS[c.labels[i, 0]] == path.split("/")[0]
    assert sorted(os.listdir(out)) == sorted(
        ["clips.npz", "labels.npy", "manifest.json", "mels-00000.npy", "report.txt", "stats.json"]
    )
    disk = json.loads((out / "manifest.json").read_text())
    assert disk["counts"] == {"items": 27, "files_found": 15, "files_used": 9, "files_skipped": 6,
                              "files_processed": 14, "files_reused": 0}

    strict = _prep(folder, tmp_path / "strict", min_rms_db=-60.0)  # decayed tails are quieter than -60 dBFS
    assert strict.n_items < 27 and "sweep/quiet.flac" in strict.skipped
    assert "items below min_rms_db=-60.0 dBFS" in (tmp_path / "strict" / "report.txt").read_text()


def test_cache_equals_log_mel_of_loaded_clip_and_stats_match(folder, tmp_path):
    out = tmp_path / "cache"
    _prep(folder, out)
    c = load_cache(str(out))
    for i in (0, 1, 2, 13):  # full clips and a padded last clip
        path, start = c.source(i)
        y, _ = audio.load(os.path.join(folder, path), SR)
        o = int(round(start * SR))
        clip = np.zeros(4000, np.float32)
        clip[: len(y[o : o + 4000])] = y[o : o + 4000]
        assert c.length[i] == min(4000, len(y) - o)
        np.testing.assert_allclose(c.mels[i], np.asarray(audio.log_mel(clip, CFG)), atol=1e-4)
    assert c.frames[2] == CFG.frames(int(c.length[2])) < 63

    mask = np.arange(63)[None, :] < c.frames[:, None]  # stats ignore padding-only frames
    x = np.where(mask[:, None, :], c.mels.astype(np.float64), np.nan)
    np.testing.assert_allclose(c.stats.mean, np.nanmean(x, axis=(0, 2)), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(c.stats.std, np.maximum(np.nanstd(x, axis=(0, 2)), 1e-3), rtol=1e-4, atol=1e-5)

    _prep(folder, tmp_path / "range", stats_kind="range")
    r = load_cache(str(tmp_path / "range")).stats
    assert r.kind == "range" and r.lo == pytest.approx(np.nanmin(x)) and r.hi == pytest.approx(np.nanmax(x))

    mm = load_cache(str(out), mmap=True)
    idx = np.array([5, 0, 23, 5])
    np.testing.assert_array_equal(mm.mels[idx], c.mels[idx])
    np.testing.assert_array_equal(np.asarray(mm.mels), c.mels)


@pytest.fixture
def decoded(monkeypatch):
    """A spy on prepare's per-file decoder: the list of files it decoded."""
    seen = []
    real = prepare_mod.read_items

    def spy(path, cfg, spec):
        seen.append(os.path.basename(path))
        return real(path, cfg, spec)

    monkeypatch.setattr(prepare_mod, "read_items", spy)
    return seen


def test_rerun_is_incremental(folder, tmp_path, decoded):
    out = tmp_path / "cache"
    m1 = _prep(folder, out)
    assert len(decoded) == 11
    decoded.clear()
    assert len(m1.processed) == 11 and m1.reused == ()  # 8 good + 3 bad decoded; loose.wav has no label
    before = load_cache(str(out))

    m2 = _prep(folder, out)
    assert m2.processed == () and len(m2.reused) == 8  # nothing decoded; bad files remembered
    assert decoded == []
    again = load_cache(str(out))
    np.testing.assert_array_equal(again.mels, before.mels)
    assert again.stats == before.stats

    new, _, _ = synthetic_dataset(1, sr=SR, seconds=2.0, seed=99)
    _write(str(folder / "sweep" / "zz_new.wav"), new[0])
    m3 = _prep(folder, out)
    assert m3.processed == ("sweep/zz_new.wav",) and decoded == ["zz_new.wav"]
    after = load_cache(str(out))
    assert len(after) == 24 + 4
    assert after.stats != before.stats  # refitted
    rows = [i for i in range(len(after)) if after.source(i)[0] == "sweep/zz_new.wav"]
    assert len(rows) == 4 and all(KINDS[after.labels[i, 0]] == "sweep" for i in rows)
    for i in range(len(after)):  # every old item is carried over unchanged
        if i not in rows:
            j = [k for k in range(len(before)) if before.source(k) == after.source(i)][0]
            np.testing.assert_array_equal(after.mels[i], before.mels[j])

    target = folder / "tone" / os.listdir(folder / "tone")[-1]
    assert target.name.startswith("tone_")
    _write(str(target), -synthetic_dataset(1, sr=SR, seconds=SECONDS, seed=5)[0][0])
    st = os.stat(target)
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    m4 = _prep(folder, out)
    assert m4.processed == (f"tone/{target.name}",)

    os.remove(folder / "sweep" / "zz_new.wav")
    m5 = _prep(folder, out)
    assert m5.processed == () and m5.n_items == 24
    assert load_cache(str(out)).mels.shape[0] == 24


def test_interrupted_run_resumes_from_staged_files(folder, tmp_path, monkeypatch, decoded):
    def crash(*args, **kwargs):
        raise KeyboardInterrupt

    with monkeypatch.context() as m:
        m.setattr(prepare_mod, "_write_cache", crash)
        with pytest.raises(KeyboardInterrupt):
            _prep(folder, tmp_path / "cache")
    assert len(decoded) == 11 and not (tmp_path / "cache" / "manifest.json").exists()
    decoded.clear()
    m = _prep(folder, tmp_path / "cache")
    assert sorted(decoded) == ["empty.wav", "notes.wav", "tiny.wav"]  # only failures are decoded again
    assert m.n_items == 24 and not (tmp_path / "cache" / ".work").exists()


def test_changed_settings_need_overwrite(folder, tmp_path):
    out = tmp_path / "cache"
    _prep(folder, out)
    other = audio.AudioConfig(sr=SR, n_fft=256, hop_length=64, n_mels=40)
    with pytest.raises(ParamError, match=r"audio_cfg.n_mels: cached 32, now 40.*new out_dir.*overwrite=True"):
        _prep(folder, out, audio_cfg=other)
    with pytest.raises(ParamError, match=r"clips.clip_seconds: cached 0.5, now 0.25"):
        _prep(folder, out, clip_seconds=0.25)
    m = _prep(folder, out, audio_cfg=other, overwrite=True)
    assert len(m.processed) == 11
    assert load_cache(str(out)).mels.shape == (24, 40, 63)


def test_csv_labels(tmp_path):
    root = tmp_path / "audio"
    write_synthetic_folder(str(root), 2, sr=SR, seconds=0.6, seed=1)
    csv_path = root / "labels.csv"
    lines = csv_path.read_text().splitlines()
    dropped = lines.pop(3).split(",")[0]
    lines.append("missing/ghost.wav,tone,C4")
    csv_path.write_text("\n".join(lines) + "\n")

    m = _prep(root, tmp_path / "cache", labels_csv=str(csv_path))
    assert m.label_source == "csv" and m.label_names == ("kind", "pitch")
    assert m.skipped == {dropped: "no row in labels_csv=labels.csv"}
    assert "missing/ghost.wav (line" in (tmp_path / "cache" / "report.txt").read_text()
    c = load_cache(str(tmp_path / "cache"))
    rows = {r.split(",")[0]: r.split(",")[1:] for r in lines[1:]}
    assert len(c) == 7  # 0.6 s files: one clip each
    for i in range(len(c)):
        kind, pitch = rows[c.source(i)[0]]
        assert (m.vocab["kind"][c.labels[i, 0]], m.vocab["pitch"][c.labels[i, 1]]) == (kind, pitch)

    m2 = _prep(root, tmp_path / "cache", labels_csv=str(csv_path), label_names=("pitch",))
    assert m2.label_names == ("pitch",) and m2.processed == ()
    assert load_cache(str(tmp_path / "cache")).labels.shape == (7, 1)
    with pytest.raises(ParamError, match="label_names=.*'colour'.*subset"):
        _prep(root, tmp_path / "cache", labels_csv=str(csv_path), label_names=("colour",))


def test_keep_whole_pads_to_max_seconds(folder, tmp_path):
    m = _prep(folder, tmp_path / "whole", keep_whole=True, max_seconds=1.0)
    c = load_cache(str(tmp_path / "whole"))
    assert m.item_samples == 8000 and c.mels.shape == (8, 32, CFG.frames(8000))
    assert np.all(c.length == 8000) and np.all(c.offset == 0)
    assert "truncated to max_seconds=1.0" in (tmp_path / "whole" / "report.txt").read_text()
    m2 = _prep(folder, tmp_path / "whole2", keep_whole=True, max_seconds=2.0)
    c2 = load_cache(str(tmp_path / "whole2"))
    assert m2.item_samples == 16000 and np.all(c2.length == int(SECONDS * SR))
    assert np.all(c2.frames == CFG.frames(int(SECONDS * SR)))


def test_hop_seconds_overlaps_clips(folder, tmp_path):
    _prep(folder, tmp_path / "hop", hop_seconds=0.25)
    c = load_cache(str(tmp_path / "hop"))
    # 10400 samples, clip 4000, hop 2000: full clips at 0, 2000, 4000, 6000; 400 uncovered < 25 %
    assert len(c) == 8 * 4
    np.testing.assert_array_equal(c.offset[:4], [0, 2000, 4000, 6000])


def test_empty_or_unusable_folder_raises(tmp_path):
    empty = tmp_path / "nothing"
    empty.mkdir()
    with pytest.raises(AudioxError, match=f"no audio files under audio_dir='{empty}'"):
        _prep(empty, tmp_path / "c1")
    bad = tmp_path / "bad" / "x"
    bad.mkdir(parents=True)
    (bad / "a.wav").write_bytes(b"")
    with pytest.raises(AudioxError, match=r"no usable audio under audio_dir=.*bad'.*1 audio file.*x/a.wav: file is empty"):
        _prep(tmp_path / "bad", tmp_path / "c2")
    assert "x/a.wav" in (tmp_path / "c2" / "report.txt").read_text()
    with pytest.raises(ParamError, match="audio_dir=.*is not a folder"):
        _prep(tmp_path / "nope", tmp_path / "c3")
    with pytest.raises(ParamError, match="stats_kind='median'"):
        _prep(empty, tmp_path / "c4", stats_kind="median")


def test_progress_bar_goes_to_stderr(tmp_path, capsys):
    root = tmp_path / "audio"
    write_synthetic_folder(str(root), 1, sr=SR, seconds=0.6, seed=2, csv_name=None)
    prepare(str(root), str(tmp_path / "c"), audio_cfg=CFG, clip_seconds=CLIP, progress=True)
    captured = capsys.readouterr()
    assert "prepare" in captured.err and "4/4" in captured.err and captured.out == ""  # tqdm, on stderr


# ------------------------------------------------------------------ iterator and split


def _arrays(n=37):
    return {"mel": np.arange(n, dtype=np.float32)[:, None, None] * np.ones((1, 2, 3), np.float32),
            "labels": (np.arange(n, dtype=np.int32) % 3)[:, None]}


def _take(it, k):
    return [next(it) for _ in range(k)]


def test_iterator_is_deterministic_and_covers_each_epoch():
    data = _arrays()
    a = _take(BatchIterator(data, 8, seed=3), 9)
    b = _take(BatchIterator(data, 8, seed=3), 9)
    c = _take(BatchIterator(data, 8, seed=4), 9)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x["mel"], y["mel"])
        np.testing.assert_array_equal(x["labels"], y["labels"])
    assert any(not np.array_equal(x["mel"], y["mel"]) for x, y in zip(a, c))
    assert a[0]["mel"].shape == (8, 2, 3) and a[0]["labels"].dtype == np.int32
    epoch0 = np.concatenate([x["mel"][:, 0, 0] for x in a[:4]]).astype(int)  # 37 // 8 = 4 steps
    assert len(set(epoch0)) == 32
    np.testing.assert_array_equal(epoch0, np.random.default_rng([3, 0]).permutation(37)[:32])

    full = list(BatchIterator(data, 8, seed=3, drop_remainder=False, epochs=2))
    assert [len(x["labels"]) for x in full] == [8, 8, 8, 8, 5] * 2
    assert sorted(np.concatenate([x["mel"][:, 0, 0] for x in full[:5]]).astype(int)) == list(range(37))
    ordered = next(BatchIterator(data, 8, seed=0, shuffle=False))
    np.testing.assert_array_equal(ordered["mel"][:, 0, 0], np.arange(8))


@pytest.mark.parametrize("k", [0, 2, 3, 4, 6])  # mid-epoch, the last step, and across an epoch boundary
def test_iterator_restore_resumes_identically(k):
    data = _arrays()
    ref = BatchIterator(data, 8, seed=11)
    expected = _take(ref, 12)
    it = BatchIterator(data, 8, seed=11)
    _take(it, k)
    state = json.loads(json.dumps(it.state()))
    assert state["epoch"] == k // 4 and state["position"] == k % 4
    fresh = BatchIterator(data, 8, seed=11)
    fresh.restore(state)
    for got, want in zip(_take(fresh, 12 - k), expected[k:]):
        np.testing.assert_array_equal(got["mel"], want["mel"])
        np.testing.assert_array_equal(got["labels"], want["labels"])
    with pytest.raises(ParamError, match="seed=11 but this iterator has seed=12"):
        BatchIterator(data, 8, seed=12).restore(state)


def test_iterator_process_shards_partition_the_global_batch():
    data = _arrays()
    glob = _take(BatchIterator(data, 8, seed=5), 6)
    parts = [_take(BatchIterator(data, 8, seed=5, process_index=p, process_count=4), 6) for p in range(4)]
    for step in range(6):
        pieces = [parts[p][step]["mel"][:, 0, 0] for p in range(4)]
        assert all(len(x) == 2 for x in pieces)
        np.testing.assert_array_equal(np.concatenate(pieces), glob[step]["mel"][:, 0, 0])
        assert len(set(np.concatenate(pieces).tolist())) == 8  # disjoint
    with pytest.raises(ParamError, match="batch_size=10 must be divisible by process_count=4"):
        BatchIterator(data, 10, seed=0, process_count=4)
    with pytest.raises(ParamError, match="batch_size=64 is larger than the 37 items"):
        BatchIterator(data, 64, seed=0)


def test_iterator_and_split_over_a_cache(folder, tmp_path):
    _prep(folder, tmp_path / "cache")
    c = load_cache(str(tmp_path / "cache"), mmap=True)
    train, val = split(c, 0.5, seed=0)
    assert len(np.intersect1d(train, val)) == 0 and len(train) + len(val) == len(c)
    assert set(c.file_index[train]).isdisjoint(c.file_index[val])  # whole files to one side
    assert sorted(c.labels[val, 0].tolist()) == [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3]  # one file per class
    t2, v2 = split(c, 0.5, seed=0)
    np.testing.assert_array_equal(v2, val)
    it = BatchIterator(c, 4, seed=0, indices=val, epochs=1)
    batches = list(it)
    assert len(batches) == 3 and set(batches[0]) == {"mel", "labels", "frames"}
    seen = np.concatenate([b["mel"] for b in batches])
    loaded = load_cache(str(tmp_path / "cache"))
    np.testing.assert_array_equal(np.sort(seen.reshape(12, -1), axis=0), np.sort(loaded.mels[val].reshape(12, -1), axis=0))
    with pytest.raises(ParamError, match="val_fraction=1.0"):
        split(c, 1.0, seed=0)


def test_small_shards_round_trip_and_update(folder, tmp_path, monkeypatch):
    monkeypatch.setattr(cachemod, "SHARD_SIZE", 5)
    out = tmp_path / "cache"
    m = _prep(folder, out)
    assert [n for _, n in m.shards] == [5, 5, 5, 5, 4] and m.shards[-1][0] == "mels-00004.npy"
    before = load_cache(str(out))
    gone = sorted(f for f in os.listdir(folder / "chord") if f.startswith("chord_"))
    for name in gone:
        os.remove(folder / "chord" / name)
    m2 = _prep(folder, out)
    assert [n for _, n in m2.shards] == [5, 5, 5, 3] and m2.processed == ()
    assert not (out / "mels-00004.npy").exists()
    after = load_cache(str(out), mmap=True)
    keep = [i for i in range(len(before)) if not before.source(i)[0].startswith("chord/")]
    np.testing.assert_array_equal(after.mels[np.arange(18)], before.mels[keep])
