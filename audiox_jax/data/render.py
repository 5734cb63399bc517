"""Render real recorded instrument and speech audio with Debian tools (no downloads).

* Instruments: General MIDI notes played by ``fluidsynth`` from the sampled
  SoundFont in Debian's ``fluid-soundfont-gm`` (recordings of real instruments).
* Speech: ``espeak-ng``.

These back the tests' "real audio" fixtures and the default model's data recipe.
Each function raises :class:`ToolMissingError` naming the apt package to install.
"""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import tempfile
from typing import Sequence

import numpy as np

from audiox_jax.audio.io import load
from audiox_jax.audio.pitch import midi_to_note, note_to_midi  # noqa: F401  (the data set's note names)
from audiox_jax.errors import AudioxError, ParamError

SOUNDFONT_PATHS = ("/usr/share/sounds/sf2/FluidR3_GM.sf2", "/usr/share/sounds/sf2/default-GM.sf2")
# Other General MIDI SoundFonts in Debian: name -> (path, apt package). TimGM6mb and csound's
# bank have their own samples (the evaluation's instrument judge trains on TimGM6mb); MuseScore
# General's organ, guitar, strings, brass and flute are FluidR3Mono's samples (its piano is new).
OTHER_SOUNDFONTS = {
    "timgm6mb": ("/usr/share/sounds/sf2/TimGM6mb.sf2", "timgm6mb-soundfont"),
    "musescore": ("/usr/share/sounds/sf3/MuseScore_General_Lite.sf3", "musescore-general-soundfont-small"),
    "csound": ("/usr/share/sounds/sf2/sf_GMbank.sf2", "csound-soundfont"),
}

# General MIDI programs (0-based) for the instruments the default model knows.
GM_PROGRAMS = {
    "piano": 0,
    "organ": 20,  # Reed Organ: the drawbar and church organs sound an octave low (see data/notes.py)
    "guitar": 24,
    "bass": 33,
    "strings": 48,
    "trumpet": 56,
    "brass": 61,
    "flute": 73,
}

class ToolMissingError(AudioxError, RuntimeError):
    """An external renderer (fluidsynth, espeak-ng, the GM SoundFont) is not installed."""


def soundfont() -> str:
    """Path of the General MIDI SoundFont the data set is rendered with (FluidR3)."""
    for p in SOUNDFONT_PATHS:
        if os.path.exists(p):
            return p
    raise ToolMissingError(
        "no General MIDI SoundFont found at " + " or ".join(SOUNDFONT_PATHS)
        + "; install it with: apt-get install fluid-soundfont-gm"
    )

_soundfont = soundfont  # render_note's ``soundfont`` argument shadows the function's name


def other_soundfont(name: str) -> str:
    """Path of the SoundFont ``name`` of ``OTHER_SOUNDFONTS``; ToolMissingError naming its package if absent."""
    if name not in OTHER_SOUNDFONTS:
        raise ParamError(f"soundfont name {name!r} is not one of {tuple(OTHER_SOUNDFONTS)}")
    path, package = OTHER_SOUNDFONTS[name]
    if not os.path.exists(path):
        raise ToolMissingError(f"SoundFont {name!r} not found at {path}; install it with: apt-get install {package}")
    return path


def _soundfont_file(path: str) -> str:
    if not os.path.isfile(path):
        raise ToolMissingError(f"soundfont={path!r} is not a file; for Debian's: apt-get install "
                               + " or ".join(p for _, p in OTHER_SOUNDFONTS.values()))
    return path


def _need(tool: str, package: str) -> str:
    path = shutil.which(tool)
    if path is None:
        raise ToolMissingError(f"'{tool}' is not installed; install it with: apt-get install {package}")
    return path


def midi_file_bytes(program: int, pitch: int, velocity: int, hold_s: float, tail_s: float = 0.5) -> bytes:
    """A one-note Standard MIDI File (format 0, 480 ticks per beat at 120 bpm)."""
    if not (0 <= program < 128 and 0 <= pitch < 128 and 1 <= velocity < 128):
        raise ParamError(f"MIDI program={program}, pitch={pitch}, velocity={velocity} must be in 0..127 (velocity >= 1)")
    tpb = 480
    ticks = lambda s: int(round(s * 2 * tpb))  # 120 bpm = 2 beats per second

    track = (
        _vlq(0) + bytes([0xC0, program])
        + _vlq(0) + bytes([0x90, pitch, velocity])
        + _vlq(ticks(hold_s)) + bytes([0x80, pitch, 0])
        + _vlq(ticks(tail_s)) + b"\xff\x2f\x00"
    )
    return b"MThd" + struct.pack(">IHHH", 6, 0, 1, tpb) + b"MTrk" + struct.pack(">I", len(track)) + track


def render_note(
    instrument: str | int, pitch: int, *, velocity: int = 100, hold_s: float = 1.0, seconds: float = 1.5,
    sr: int = 22050, soundfont: str | None = None,
) -> np.ndarray:
    """Play one General MIDI note with fluidsynth: f32[round(seconds * sr)] mono in [-1, 1].

    soundfont: path of a .sf2/.sf3 file to play it with; None = the GM SoundFont of
      ``SOUNDFONT_PATHS`` (FluidR3). ``OTHER_SOUNDFONTS`` lists other Debian ones.
    """

    program = GM_PROGRAMS[instrument] if isinstance(instrument, str) else int(instrument)
    fluidsynth = _need("fluidsynth", "fluidsynth")
    sf2 = _soundfont() if soundfont is None else _soundfont_file(soundfont)
    with tempfile.TemporaryDirectory() as tmp:
        mid, wav = os.path.join(tmp, "n.mid"), os.path.join(tmp, "n.wav")
        with open(mid, "wb") as f:
            f.write(midi_file_bytes(program, pitch, velocity, hold_s, max(seconds - hold_s, 0.0) + 0.1))
        subprocess.run(
            [fluidsynth, "-ni", "-q", "-g", "1.0", "-r", str(sr), "-F", wav, sf2, mid],
            check=True, capture_output=True, timeout=120,
        )
        y, _ = load(wav, sr)
    n = int(round(seconds * sr))
    return np.pad(y, (0, max(0, n - len(y))))[:n]


def render_note_sequence(
    instrument: str | int, notes: Sequence[tuple[int, int]], *, hold_s: float = 1.0, seconds: float = 1.5,
    spacing_s: float = 4.0, sr: int = 22050, soundfont: str | None = None,
) -> np.ndarray:
    """Play many notes of one program in one fluidsynth run (fast for big SoundFonts): f32[len(notes), seconds * sr].

    notes: (MIDI pitch, velocity) pairs, played one after the other, a note-on every
    ``spacing_s`` seconds (4 s: the previous note's release and reverb have died away);
    clip ``i`` is the ``seconds`` from note-on ``i``, as :func:`render_note` would cut it
    (up to fluidsynth's event timing, one 64-sample block). Other arguments as render_note.
    """

    program = GM_PROGRAMS[instrument] if isinstance(instrument, str) else int(instrument)
    if not notes or not (0 < hold_s < spacing_s and 0 < seconds <= spacing_s):
        raise ParamError(f"need notes (got {len(notes)}) and 0 < hold_s={hold_s} < spacing_s={spacing_s}, "
                         f"0 < seconds={seconds} <= spacing_s")
    fluidsynth = _need("fluidsynth", "fluidsynth")
    sf2 = _soundfont() if soundfont is None else _soundfont_file(soundfont)
    tpb, n = 480, int(round(seconds * sr))
    ticks = lambda s: int(round(s * 2 * tpb))  # 120 bpm = 2 beats per second
    track = _vlq(0) + bytes([0xC0, program])
    for pitch, velocity in notes:
        if not (0 <= pitch < 128 and 1 <= velocity < 128):
            raise ParamError(f"MIDI pitch={pitch}, velocity={velocity} must be in 0..127 (velocity >= 1)")
        track += _vlq(0) + bytes([0x90, pitch, velocity]) + _vlq(ticks(hold_s)) + bytes([0x80, pitch, 0])
        track += _vlq(ticks(spacing_s) - ticks(hold_s)) + bytes([0xB0, 123, 0])  # all notes off, a no-op pause
    track += _vlq(0) + b"\xff\x2f\x00"
    midi = b"MThd" + struct.pack(">IHHH", 6, 0, 1, tpb) + b"MTrk" + struct.pack(">I", len(track)) + track
    with tempfile.TemporaryDirectory() as tmp:
        mid, wav = os.path.join(tmp, "n.mid"), os.path.join(tmp, "n.wav")
        with open(mid, "wb") as f:
            f.write(midi)
        subprocess.run([fluidsynth, "-ni", "-q", "-g", "1.0", "-r", str(sr), "-F", wav, sf2, mid],
                       check=True, capture_output=True, timeout=600)
        y, _ = load(wav, sr)
    y = np.pad(y, (0, max(0, len(notes) * ticks(spacing_s) * sr // (2 * tpb) + n - len(y))))
    starts = [i * ticks(spacing_s) * sr // (2 * tpb) for i in range(len(notes))]
    return np.stack([y[s : s + n] for s in starts]).astype(np.float32)


def _vlq(n: int) -> bytes:
    """A MIDI variable-length quantity."""
    out = [n & 0x7F]
    while n > 0x7F:
        n >>= 7
        out.append((n & 0x7F) | 0x80)
    return bytes(reversed(out))


def render_speech(text: str, *, sr: int = 22050) -> np.ndarray:
    """Speak ``text`` with espeak-ng: f32[samples] mono at ``sr``."""
    espeak = _need("espeak-ng", "espeak-ng")
    with tempfile.TemporaryDirectory() as tmp:
        wav = os.path.join(tmp, "s.wav")
        subprocess.run([espeak, "-w", wav, text], check=True, capture_output=True, timeout=120)
        y, _ = load(wav, sr)
    return y
