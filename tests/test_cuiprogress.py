"""Tests of sharedapplier.cuiprogress (spec 9.6)."""
import io
import sys

import pytest

from sharedapplier import cuiprogress
from sharedapplier.cuiprogress import (
    CUIProgressBar,
    GDALProgressBar,
    LogProgressBar,
    SilentProgress,
)

ALL_CLASSES = (CUIProgressBar, GDALProgressBar, LogProgressBar, SilentProgress)


class FakeStdout(io.StringIO):
    """A text stream that says whether it is a terminal."""

    def __init__(self, tty):
        super().__init__()
        self.tty = tty

    def isatty(self):
        return self.tty


@pytest.fixture
def stdout(monkeypatch):
    """Install a fake stdout from inside the test (pytest re-installs its own before a test)."""
    def install(tty):
        stream = FakeStdout(tty)
        monkeypatch.setattr(sys, "stdout", stream)
        return stream
    return install


@pytest.fixture
def gdal_calls(monkeypatch):
    calls = []
    monkeypatch.setattr(cuiprogress.gdal, "TermProgress_nocb", lambda frac: calls.append(frac))
    return calls


@pytest.mark.parametrize("cls", ALL_CLASSES)
def test_interface(cls):
    p = cls()
    assert p.totalsteps == 100
    p.setTotalSteps(7)
    assert p.totalsteps == 7
    assert p.wasCancelled() is False
    for method in ("setProgress", "reset", "setLabelText", "displayException",
                   "displayWarning", "displayError", "displayInfo"):
        assert callable(getattr(p, method))


def test_cui_bar_tty(stdout):
    tty = stdout(True)
    p = CUIProgressBar()
    p.setProgress(0)
    p.setProgress(42.9)
    p.setTotalSteps(8)
    p.setProgress(2)
    assert tty.getvalue() == "0%\r42%\r25%\r"
    p.reset()
    assert tty.getvalue().endswith("25%\r\n")


def test_cui_bar_not_tty(stdout):
    notty = stdout(False)
    p = CUIProgressBar()
    p.setProgress(50)
    assert notty.getvalue() == ""
    p.reset()
    assert notty.getvalue() == "\n"


@pytest.mark.parametrize("cls", (CUIProgressBar, GDALProgressBar, LogProgressBar))
def test_messages(cls, stdout):
    notty = stdout(False)
    p = cls()
    p.setLabelText("Computing Pyramid Layers...")
    p.displayWarning("w")
    p.displayError("e")
    p.displayInfo("i")
    p.displayException("Traceback (most recent call last):\n  boom\n")
    assert notty.getvalue() == ("\nComputing Pyramid Layers...\n"
                                "Warning: w\nError: e\nInfo: i\n"
                                "Traceback (most recent call last):\n  boom\n")


def test_log_bar_writes_each_change(stdout):
    notty = stdout(False)
    p = LogProgressBar()
    for value in (0, 0.4, 1, 1, 1.9, 2, 100):
        p.setProgress(value)
    assert notty.getvalue() == "0%\n1%\n2%\n100%\n"


def test_log_bar_reset_and_total_steps_forget_last(stdout):
    notty = stdout(False)
    p = LogProgressBar()
    p.setProgress(50)
    p.reset()
    p.setProgress(50)
    p.setTotalSteps(200)
    p.setProgress(100)
    p.setProgress(101)
    assert notty.getvalue() == "50%\n\n50%\n50%\n"


def test_gdal_bar_tty(stdout, gdal_calls):
    tty = stdout(True)
    p = GDALProgressBar()
    p.setTotalSteps(4)
    p.setProgress(1)
    p.setProgress(3)
    assert gdal_calls == [0.25, 0.75]
    p.reset()
    assert gdal_calls == [0.25, 0.75, 1.0]
    assert tty.getvalue() == "\n"


def test_gdal_bar_not_tty(stdout, gdal_calls):
    notty = stdout(False)
    p = GDALProgressBar()
    p.setProgress(50)
    p.reset()
    assert gdal_calls == []
    assert notty.getvalue() == "\n"


def test_silent_progress_prints_nothing(stdout, gdal_calls):
    tty = stdout(True)
    p = SilentProgress()
    p.setProgress(10)
    p.reset()
    p.setLabelText("x")
    p.displayWarning("x")
    p.displayError("x")
    p.displayInfo("x")
    p.displayException("x")
    assert tty.getvalue() == "" and gdal_calls == []


def test_closed_stdout_counts_as_not_tty(monkeypatch):
    stream = io.StringIO()
    stream.close()
    monkeypatch.setattr(sys, "stdout", stream)
    CUIProgressBar().setProgress(5)  # no write attempted, so no error
