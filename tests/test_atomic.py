"""ctcforge's one atomic write: the old file or the new one, never half, and no litter."""

import os
import stat

import pytest

from ctcforge.runtime.atomic import replacing, write_bytes_atomically, write_text_atomically


@pytest.mark.parametrize("error", [RuntimeError("interrupted"), OSError(28, "No space left on device"),
                                   KeyboardInterrupt()])
def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path, error):
    target = tmp_path / "card.md"
    target.write_text("old")
    with pytest.raises(type(error)):
        with replacing(target) as temporary:
            temporary.write_text("half")
            raise error
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["card.md"]


def test_writes_replace_in_place_and_keep_the_mode(tmp_path):
    target = tmp_path / "run.sh"
    target.write_text("old")
    target.chmod(0o755)
    write_text_atomically(target, "new ✓")
    assert target.read_text(encoding="utf-8") == "new ✓"
    assert stat.S_IMODE(target.stat().st_mode) == 0o755
    fresh = write_bytes_atomically(tmp_path / "sub" / "weights.bin", b"\0\1")
    assert fresh.read_bytes() == b"\0\1"
    umask = os.umask(0)
    os.umask(umask)
    # Not mkstemp's private 0600: a new file gets what an ordinary open() would give it.
    assert stat.S_IMODE(fresh.stat().st_mode) == 0o666 & ~umask
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["run.sh", "sub", "weights.bin"]


def test_a_tool_that_fails_mid_plot_leaves_the_old_png(tmp_path, monkeypatch):
    """plots.py writes through the same helper, so a card never links to half a PNG."""
    from ctcforge import plots

    history = [{"loss": 3.0, "step": 1, "epoch": 0.5}, {"eval_loss": 2.0, "eval_wer": 0.9, "step": 2, "epoch": 1.0}]
    png = tmp_path / "training_curve.png"
    png.write_bytes(b"old png")
    import matplotlib.figure

    def fail(self, path, **_):
        open(path, "wb").write(b"half")
        raise OSError("disk full")

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", fail)
    with pytest.raises(OSError, match="disk full"):
        plots.training_curve(history, png, ["wer"])
    assert png.read_bytes() == b"old png"
    assert [p.name for p in tmp_path.iterdir()] == ["training_curve.png"]
