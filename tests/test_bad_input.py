"""Bad input meets a one-line error naming the input and the fix (exit status 2), a logged
skip with its reason, or a documented conversion; never a traceback, never lost work (issue 14)."""

import os
import re

import pytest

from audiox_jax import cli

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = os.path.join(ROOT, "configs", "tiny.yaml")


def one_line_error(capsys, command: str) -> str:
    """The CLI's stderr, checked to be the single ``audiox-jax COMMAND: error: ...`` line."""
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"audiox-jax {command}: error: "), err
    return lines[0]


# ------------------------------------------------------------------ config


@pytest.mark.parametrize("value", ["-1e-3", "0", ".nan", ".inf"])
def test_a_learning_rate_that_is_not_positive_and_finite_is_rejected(tmp_path, capsys, value):
    assert cli.main(["train", "--config", TINY, "--workdir", str(tmp_path / "w"), "--set", f"train.lr={value}"]) == 2
    assert re.search(r"train\.lr=\S+ must be a finite number > 0", one_line_error(capsys, "train"))
    assert not (tmp_path / "w").exists()  # refused before anything was written
