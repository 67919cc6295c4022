"""Progress objects for the console and for log files (RIOS's progress interface).

Every class takes no arguments, counts ``totalsteps`` (default 100) and writes to the
``sys.stdout`` current at the time of the call. None of them can be cancelled.
"""
import sys

from osgeo import gdal


def _stdout_is_tty():
    isatty = getattr(sys.stdout, "isatty", None)
    try:
        return bool(isatty and isatty())
    except ValueError:  # closed stream
        return False


def _write(text):
    sys.stdout.write(text)
    sys.stdout.flush()


class _TextProgress:
    """Shared behaviour: step count, label and message output, no cancellation."""

    def __init__(self):
        self.totalsteps = 100

    def setTotalSteps(self, steps: int):
        """Set the value that counts as 100%."""
        self.totalsteps = steps

    def _percent(self, value):
        return int(value / self.totalsteps * 100)

    def reset(self):
        """End the current bar with a newline."""
        _write("\n")

    def setLabelText(self, text: str):
        """Print a label on its own line."""
        _write(f"\n{text}\n")

    def wasCancelled(self) -> bool:
        """Console progress cannot be cancelled."""
        return False

    def displayException(self, trace: str):
        """Print a formatted traceback as it is."""
        _write(trace)

    def displayWarning(self, text: str):
        _write(f"Warning: {text}\n")

    def displayError(self, text: str):
        _write(f"Error: {text}\n")

    def displayInfo(self, text: str):
        _write(f"Info: {text}\n")


class CUIProgressBar(_TextProgress):
    """Percentage overwritten in place ("N%\\r"), shown only when stdout is a terminal."""

    def setProgress(self, value: float):
        if _stdout_is_tty():
            _write(f"{self._percent(value)}%\r")


class GDALProgressBar(_TextProgress):
    """GDAL's own terminal progress bar, shown only when stdout is a terminal."""

    def setProgress(self, value: float):
        if _stdout_is_tty():
            gdal.TermProgress_nocb(value / self.totalsteps)

    def reset(self):
        """Complete the bar (on a terminal), then write a newline."""
        if _stdout_is_tty():
            gdal.TermProgress_nocb(1.0)
        _write("\n")


class LogProgressBar(_TextProgress):
    """One "N%" line each time the whole percentage changes; suits log files."""

    def __init__(self):
        super().__init__()
        self.lastprogress = None

    def setTotalSteps(self, steps: int):
        super().setTotalSteps(steps)
        self.lastprogress = None

    def setProgress(self, value: float):
        percent = self._percent(value)
        if percent != self.lastprogress:
            _write(f"{percent}%\n")
            self.lastprogress = percent

    def reset(self):
        super().reset()
        self.lastprogress = None


class SilentProgress(_TextProgress):
    """Progress object that shows nothing at all."""

    def setProgress(self, value: float):
        pass

    def reset(self):
        pass

    def setLabelText(self, text: str):
        pass

    def displayException(self, trace: str):
        pass

    def displayWarning(self, text: str):
        pass

    def displayError(self, text: str):
        pass

    def displayInfo(self, text: str):
        pass
