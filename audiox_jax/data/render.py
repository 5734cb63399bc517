"""Render real recorded instrument and speech audio with Debian tools (no downloads).

* Instruments: General MIDI notes played by ``fluidsynth`` from the sampled
  SoundFont in Debian's ``fluid-soundfont-gm`` (recordings of real instruments).
* Speech: ``espeak-ng``.

These back the tests' "real audio" fixtures and the default model's data recipe.
Each function raises :class:`ToolMissingError` naming the apt package to install.
"""

from __future__ import annotations

import os
import re
import shutil
import struct
import subprocess
import tempfile

import numpy as np

from audiox_jax.errors import AudioxError, ParamError

SOUNDFONT_PATHS = ("/usr/share/sounds/sf2/FluidR3_GM.sf2", "/usr/share/sounds/sf2/default-GM.sf2")

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

NOTE_NAMES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")


class ToolMissingError(AudioxError, RuntimeError):
    """An external renderer (fluidsynth, espeak-ng, the GM SoundFont) is not installed."""


def note_to_midi(name: str) -> int:
    """'C4' -> 60, 'A#3' -> 58, 'Bb2' -> 46 (scientific pitch, A4 = 69); '60' -> 60."""
    s = str(name).strip()
    if s.isdigit():
        return int(s)
    m = re.fullmatch(r"([A-Ga-g])([#b]?)(-?\d+)", s)
    if m is None:
        raise ParamError(f"pitch {name!r} is not a note name; use a name like 'C4', 'F#3', 'Bb2' or a MIDI number")
    letter, accidental, octave = m.groups()
    semitone = NOTE_NAMES.index(letter.upper()) + {"#": 1, "b": -1, "": 0}[accidental]
    return semitone + 12 * (int(octave) + 1)


def midi_to_note(midi: int) -> str:
    """60 -> 'C4'."""
    return f"{NOTE_NAMES[midi % 12]}{midi // 12 - 1}"


def soundfont() -> str:
    for p in SOUNDFONT_PATHS:
        if os.path.exists(p):
            return p
    raise ToolMissingError(
        "no General MIDI SoundFont found at " + " or ".join(SOUNDFONT_PATHS)
        + "; install it with: apt-get install fluid-soundfont-gm"
    )


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

    def vlq(n: int) -> bytes:
        out = [n & 0x7F]
        while n > 0x7F:
            n >>= 7
            out.append((n & 0x7F) | 0x80)
        return bytes(reversed(out))

    track = (
        vlq(0) + bytes([0xC0, program])
        + vlq(0) + bytes([0x90, pitch, velocity])
        + vlq(ticks(hold_s)) + bytes([0x80, pitch, 0])
        + vlq(ticks(tail_s)) + b"\xff\x2f\x00"
    )
    return b"MThd" + struct.pack(">IHHH", 6, 0, 1, tpb) + b"MTrk" + struct.pack(">I", len(track)) + track


def render_note(
    instrument: str | int, pitch: int, *, velocity: int = 100, hold_s: float = 1.0, seconds: float = 1.5, sr: int = 22050
) -> np.ndarray:
    """Play one General MIDI note with fluidsynth: f32[round(seconds * sr)] mono in [-1, 1]."""
    from audiox_jax.audio.io import load

    program = GM_PROGRAMS[instrument] if isinstance(instrument, str) else int(instrument)
    fluidsynth = _need("fluidsynth", "fluidsynth")
    sf2 = soundfont()
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


def render_speech(text: str, *, sr: int = 22050) -> np.ndarray:
    """Speak ``text`` with espeak-ng: f32[samples] mono at ``sr``."""
    from audiox_jax.audio.io import load

    espeak = _need("espeak-ng", "espeak-ng")
    with tempfile.TemporaryDirectory() as tmp:
        wav = os.path.join(tmp, "s.wav")
        subprocess.run([espeak, "-w", wav, text], check=True, capture_output=True, timeout=120)
        y, _ = load(wav, sr)
    return y
