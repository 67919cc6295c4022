"""Progress objects for the console and for log files (RIOS's progress interface).

RIOS's classes take no arguments, count ``totalsteps`` (default 100) and write to the
``sys.stdout`` current at the time of the call. :class:`ProgressBar` (not in RIOS) also shows
blocks per second and time left. None of them can be cancelled.
"""
import sys
import time

from osgeo import gdal


def _stdoutIsTty():
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
    """Percentage overwritten in place (``N%`` then a carriage return), only on a terminal."""

    def setProgress(self, value: float):
        if _stdoutIsTty():
            _write(f"{self._percent(value)}%\r")


class GDALProgressBar(_TextProgress):
    """GDAL's own terminal progress bar, shown only when stdout is a terminal."""

    def setProgress(self, value: float):
        if _stdoutIsTty():
            gdal.TermProgress_nocb(value / self.totalsteps)

    def reset(self):
        """Complete the bar (on a terminal), then write a newline."""
        if _stdoutIsTty():
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


def _clockText(seconds: float) -> str:
    """``m:ss``, or ``h:mm:ss`` from an hour up."""
    total = max(0, int(round(seconds)))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}:{minutes:02d}:{secs:02d}"
    return f"{minutes}:{secs:02d}"


class ProgressBar:
    """A progress bar with blocks per second and time left; plain log lines off a terminal.

    Accepts RIOS's progress protocol (``setProgress`` in ``totalsteps`` units, default 100)
    and, from apply, ``setBlocks(done, total)``, which adds the block count, the rate and the
    estimated time left. On a terminal one line is redrawn in place (at most every
    ``redrawSeconds``, and on every change of the whole percentage)::

        [#############----------------]  45%  123/270 blocks  38.2 blocks/s  ETA 0:04

    When the stream is not a terminal (a log file, a pipe), it writes a plain line each time
    the percentage passes a multiple of ``logPercentStep``, or ``logSeconds`` after the last
    line if anything moved, and once at 100%. ``stream`` defaults to the ``sys.stdout``
    current at each call. ``setLabelText`` starts a new phase (e.g. post-pass pyramids).
    Cannot be cancelled.
    """

    def __init__(self, stream=None, width: int = 30, logPercentStep: int = 10,
                 logSeconds: float = 5.0, redrawSeconds: float = 0.1):
        self.stream = stream
        self.width = width
        self.logPercentStep = logPercentStep
        self.logSeconds = logSeconds
        self.redrawSeconds = redrawSeconds
        self.clock = time.monotonic
        self.totalsteps = 100
        self._forget()

    def _forget(self):
        """Start a new phase: no percentage, blocks or timing yet."""
        self.percent = None
        self.blocks = None
        self._start = None
        self._lastShown = None
        self._lastPercent = None
        self._lastPosition = None
        self._lineOpen = False
        self._lineWidth = 0
        self._finished = False

    # --- the RIOS progress protocol ----------------------------------------------------
    def setTotalSteps(self, steps: int):
        """Set the ``setProgress`` value that counts as 100%."""
        self.totalsteps = steps

    def setProgress(self, value: float):
        """Show ``value`` (out of ``totalsteps``); ignored when block counts are known."""
        if self.blocks is None:
            self._advance(int(value / self.totalsteps * 100), value)

    def setBlocks(self, done: int, total: int):
        """Show ``done`` of ``total`` blocks (called by apply before each percentage)."""
        total = max(total, 1)
        self.blocks = (done, total)
        self._advance(int(round(100 * done / total)), done)

    def reset(self):
        """End the current line and forget the phase."""
        self._endLine()
        self._forget()

    def setLabelText(self, text: str):
        """Print a label on its own line; the next progress starts a new phase."""
        self._endLine()
        self._forget()
        self._write(f"{text}\n")

    def wasCancelled(self) -> bool:
        """This bar cannot be cancelled."""
        return False

    def displayException(self, trace: str):
        self._message(trace)

    def displayWarning(self, text: str):
        self._message(f"Warning: {text}\n")

    def displayError(self, text: str):
        self._message(f"Error: {text}\n")

    def displayInfo(self, text: str):
        self._message(f"Info: {text}\n")

    # --- internals ---------------------------------------------------------------------
    def _out(self):
        return sys.stdout if self.stream is None else self.stream

    def _isatty(self) -> bool:
        isatty = getattr(self._out(), "isatty", None)
        try:
            return bool(isatty and isatty())
        except ValueError:  # closed stream
            return False

    def _write(self, text: str):
        out = self._out()
        out.write(text)
        out.flush()

    def _message(self, text: str):
        self._endLine()
        self._write(text)

    def _endLine(self):
        if self._lineOpen:
            self._write("\n")
            self._lineOpen = False
            self._lineWidth = 0

    def _advance(self, percent: int, position: float):
        """Record a new position (blocks or steps); draw or log it when due."""
        percent = min(max(percent, 0), 100)
        now = self.clock()
        if self._start is None or (self.percent is not None and percent < self.percent):
            self._forgetTiming(now, position)
        if self._finished and percent >= 100:
            return
        self._finished = False
        changed = percent != self.percent
        self.percent = percent
        self._position = position
        if self._isatty():
            self._redraw(now, changed)
        else:
            self._log(now)

    def _forgetTiming(self, now, position):
        self._start = (now, position)
        self._lastShown = None
        self._lastPercent = None
        self._lastPosition = None

    def _rate(self, now):
        """Positions per second since the phase began, or None before it can be told."""
        t0, p0 = self._start
        if now <= t0 or self._position <= p0:
            return None
        return (self._position - p0) / (now - t0)

    def _status(self, now) -> str:
        """The text after the bar: percent, blocks, rate and ETA (or time taken)."""
        parts = [f"{self.percent:3d}%"]
        rate = self._rate(now)
        if self.blocks is not None:
            done, total = self.blocks
            parts.append(f"{done}/{total} blocks")
            parts.append("-- blocks/s" if rate is None else f"{rate:.1f} blocks/s")
            left = None if rate is None else (total - done) / rate
        else:
            left = None if rate is None else (self.totalsteps - self._position) / rate
        if self.percent >= 100:
            parts.append(f"in {_clockText(now - self._start[0])}")
        else:
            parts.append("ETA -:--" if left is None else f"ETA {_clockText(left)}")
        return "  ".join(parts)

    def _redraw(self, now, changed):
        due = self._lastShown is None or now - self._lastShown >= self.redrawSeconds
        if not (changed or due or self.percent >= 100):
            return
        filled = self.width * self.percent // 100
        bar = "[" + "#" * filled + "-" * (self.width - filled) + "]"
        text = f"{bar}  {self._status(now)}"
        self._write("\r" + text.ljust(self._lineWidth))
        self._lineWidth = len(text)
        self._lineOpen = True
        self._lastShown = now
        if self.percent >= 100:
            self._endLine()
            self._finished = True

    def _log(self, now):
        last = self._lastPercent
        step = max(self.logPercentStep, 1)
        crossed = last is None or self.percent // step > last // step or (
            self.percent >= 100 > last)
        moved = self._position != self._lastPosition
        stale = self._lastShown is not None and now - self._lastShown >= self.logSeconds
        if not (crossed or (moved and stale)):
            return
        self._write(self._status(now) + "\n")
        self._lastShown = now
        self._lastPercent = self.percent
        self._lastPosition = self._position
        if self.percent >= 100:
            self._finished = True
