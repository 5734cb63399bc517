"""The GM note data set recipe: layout, labels, normalisation, idempotence, pitch of the rendered notes."""

import csv
import os

import numpy as np
import pytest
import soundfile as sf

from audiox_jax.data import notes, render
from audiox_jax.errors import ParamError

SR = 22050
INSTRUMENTS = ("piano", "flute")
PITCHES = (55, 60, 67, 72)  # G3 is below the flute's range: piano only
VELOCITIES = (100,)


def _need_tools(fn, *args, **kwargs):
    try:
        return fn(*args, **kwargs)
    except render.ToolMissingError as err:
        if os.environ.get("CI"):
            pytest.fail(f"CI must have fluidsynth and fluid-soundfont-gm: {err}")
        pytest.skip(str(err))


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("gm_notes"))
    paths = _need_tools(notes.render_note_dataset, out, instruments=INSTRUMENTS, pitches=PITCHES,
                        velocities=VELOCITIES, progress=False)
    return out, paths


def test_plan_clips_each_instrument_to_its_range():
    plan = notes.plan_notes(INSTRUMENTS, PITCHES, (70, 100))
    assert [(n.instrument, n.pitch) for n in plan[::2]] == [
        ("piano", 55), ("piano", 60), ("piano", 67), ("piano", 72), ("flute", 60), ("flute", 67), ("flute", 72)]
    assert plan[0].path == "piano/piano_055_070.wav" and plan[1].velocity == 100


def test_plan_rejects_bad_arguments():
    with pytest.raises(ParamError, match="subset of"):
        notes.plan_notes(("piano", "kazoo"))
    with pytest.raises(ParamError, match="sequence of names"):
        notes.plan_notes("piano")
    with pytest.raises(ParamError, match="flute.*60..96"):
        notes.plan_notes(("flute",), (40, 50))
    with pytest.raises(ParamError, match="velocities"):
        notes.plan_notes(("piano",), (60,), (0,))


def test_pitch_labels_sort_in_pitch_order_and_map_back():
    labels = [notes.pitch_label(m) for m in (48, 60, 59, 100)]
    assert labels == ["048", "060", "059", "100"]
    assert sorted(labels) == [notes.pitch_label(m) for m in (48, 59, 60, 100)]
    assert [notes.label_midi(s) for s in ("048", "060", "C4", "A4", "F#3")] == [48, 60, 60, 69, 54]


def test_layout_csv_and_normalisation(rendered):
    out, paths = rendered
    assert paths[-1] == os.path.join(out, "labels.csv")
    with open(paths[-1], newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["path", "instrument", "pitch"]
    assert rows[1:] == [["piano/piano_055_100.wav", "piano", "055"], ["piano/piano_060_100.wav", "piano", "060"],
                        ["piano/piano_067_100.wav", "piano", "067"], ["piano/piano_072_100.wav", "piano", "072"],
                        ["flute/flute_060_100.wav", "flute", "060"], ["flute/flute_067_100.wav", "flute", "067"],
                        ["flute/flute_072_100.wav", "flute", "072"]]
    for rel, *_ in rows[1:]:
        y, sr = sf.read(os.path.join(out, rel), dtype="float32")
        assert sr == SR and y.shape == (SR,)  # mono, 1.0 s
        assert 20 * np.log10(np.max(np.abs(y))) == pytest.approx(notes.PEAK_DBFS, abs=0.05)
        assert np.max(np.abs(y[-20:])) < 0.01  # faded out at the cut
    assert notes.read_labels(out)[4] == ("flute/flute_060_100.wav", "flute", 60)


def test_rendered_notes_have_their_pitch(rendered):
    out, _ = rendered
    report = notes.check_notes(out)
    assert report["checked"] == 7 and report["silent"] == []
    assert report["pitch_accuracy"] >= 6 / 7, report["pitch_wrong"]


def test_rerun_keeps_existing_files_and_cli_rewrites_csv(rendered):
    out, paths = rendered
    mtimes = [os.stat(p).st_mtime_ns for p in paths[:-1]]
    assert notes.main(["--out", out, "--instruments", "flute", "--pitches", "60,67", "--velocities", "100"]) == 0
    assert [os.stat(p).st_mtime_ns for p in paths[:-1]] == mtimes  # nothing rendered again
    assert [r[0] for r in notes.read_labels(out)] == ["flute/flute_060_100.wav", "flute/flute_067_100.wav"]
    notes.render_note_dataset(out, instruments=INSTRUMENTS, pitches=PITCHES, velocities=VELOCITIES, progress=False)
    assert len(notes.read_labels(out)) == 7


def test_other_settings_in_the_same_folder_are_refused(rendered):
    out, _ = rendered
    with pytest.raises(ParamError, match="seconds: 1.0 there, 2.0 now"):
        notes.render_note_dataset(out, instruments=("piano",), pitches=(60,), velocities=VELOCITIES, seconds=2.0,
                                  progress=False)


def test_silent_note_is_dropped():
    assert notes.finish_note(np.zeros(SR, np.float32), SR) is None
    y = notes.finish_note(0.1 * np.ones(SR, np.float32), SR)
    assert y[0] == pytest.approx(10 ** (notes.PEAK_DBFS / 20), rel=1e-5) and y[-1] == 0.0
