"""A run's timeline picture and a one-line diagnosis of what limited it, from its Timers.

Both work from ``Timers.intervalsByWorker`` (worker -> timer name -> (start, end) pairs).
Worker names are those the engine uses: ``"read N"`` (read threads), ``"compute N"`` (compute
threads or processes) and ``"main"`` (the main thread, which always writes, reads when there
are no read workers and computes with CW_NONE). Timer names are grouped into activities:

* read: ``reading``;
* compute: ``userfunction``, ``copy_output`` and ``summarising`` (the block's statistics,
  histogram counts and overview samples, for the writer);
* write: ``writing`` and the output's finishing work (``pyramids``, ``basicstats``,
  ``histogram``, ``stats+histogram``, ``beforeclose``);
* wait: ``wait_input``, ``wait_free_slot`` (and RIOS's buffer timers);
* start: ``startcomputeworkers``.

matplotlib is optional: it is imported only when a picture is drawn, with the Agg backend
(no display needed, pyplot's global state untouched).
"""
from __future__ import annotations

import re
import textwrap
from dataclasses import dataclass, field

from . import rioserrors

ACTIVITY_OF = {
    "reading": "read",
    "userfunction": "compute", "copy_output": "compute", "summarising": "compute",
    "writing": "write", "pyramids": "write", "basicstats": "write", "histogram": "write",
    "stats+histogram": "write", "beforeclose": "write",
    "wait_input": "wait", "wait_free_slot": "wait", "insert_readbuffer": "wait",
    "pop_readbuffer": "wait", "insert_computebuffer": "wait", "pop_computebuffer": "wait",
    "startcomputeworkers": "start", "restartworker": "start",
}
ACTIVITIES = ("read", "compute", "write", "wait", "start")
WORK = ("read", "compute", "write")
COLOURS = {"read": "#4477aa", "compute": "#ee7733", "write": "#228833", "wait": "#bbbbbb",
           "start": "#aa3377"}
LEGEND = {"read": "read", "compute": "compute (user function, copy, summary)",
          "write": "write (+ statistics, pyramids)", "wait": "wait (input / free slot)",
          "start": "start compute workers"}
ROLE_OF = {"read": "reading", "compute": "computing", "write": "writing"}
MAIN = "main"

# A role's workers count as saturated when their work (any activity but waiting) covers at
# least this fraction of their time; start-up above START_LIMIT of the run is worth a remark.
BUSY_LIMIT = 0.5
START_LIMIT = 0.25
# ... and waiting counts as the limit when the workers that waited did so this much
WAIT_LIMIT = 0.25
MATPLOTLIB_HINT = "drawing a timeline needs matplotlib: pip install matplotlib"


# ---------------------------------------------------------------------------------------
# Reading the Timers


def _snapshot(timers) -> dict:
    """worker -> name -> pairs (Timers builds them afresh, under its lock, when asked).

    Timers that never named a worker (built with ``Timers()``) count as one "main" worker.
    """
    return timers.intervalsByWorker or {MAIN: timers.pairs}


def runWindow(timers) -> tuple[float, float] | None:
    """(start, end) of the run: the ``walltime`` interval, else the span of all intervals."""
    pairs = timers.pairs
    chosen = pairs.get("walltime") or [p for v in pairs.values() for p in v]
    if not chosen:
        return None
    return min(s for s, _ in chosen), max(e for _, e in chosen)


def _activities(byName: dict) -> dict[str, list[tuple[float, float]]]:
    """One worker's pairs grouped by activity (unknown names and walltime are left out)."""
    grouped: dict[str, list] = {}
    for name, pairs in byName.items():
        activity = ACTIVITY_OF.get(name)
        if activity is not None:
            grouped.setdefault(activity, []).extend(pairs)
    return grouped


def _unionLength(pairs, lo: float, hi: float) -> float:
    """Seconds covered by ``pairs`` inside [lo, hi], overlaps counted once."""
    total, reach = 0.0, lo
    for start, end in sorted(pairs):
        start, end = max(start, reach), min(end, hi)
        if end > start:
            total += end - start
            reach = end
    return total


def _workerKey(worker: str):
    """Row order: read workers, compute workers, any others, then the main thread."""
    kind = worker.split(" ", 1)[0]
    group = {"read": 0, "compute": 1}.get(kind, 3 if worker == MAIN else 2)
    numbers = [int(n) for n in re.findall(r"\d+", worker)]
    return group, numbers, worker


# ---------------------------------------------------------------------------------------
# Timeline rows


@dataclass
class TimelineRow:
    """One row of the picture: a worker and its bars, as (offset, duration) seconds."""

    worker: str
    label: str
    bars: dict[str, list[tuple[float, float]]] = field(default_factory=dict)


def rowLabel(worker: str) -> str:
    """The row's label: the worker's name; the main thread is shown as the writer."""
    return "writer (main)" if worker == MAIN else worker


def timelineRows(timers) -> list[TimelineRow]:
    """The rows to draw, in order: read workers, compute workers, others, writer (main).

    Offsets are seconds from the start of the run; workers with nothing to draw are left out.
    """
    window = runWindow(timers)
    if window is None:
        return []
    origin = window[0]
    rows = []
    for worker, byName in sorted(_snapshot(timers).items(), key=lambda kv: _workerKey(kv[0])):
        grouped = _activities(byName)
        bars = {a: [(s - origin, e - s) for s, e in sorted(grouped[a])]
                for a in ACTIVITIES if grouped.get(a)}
        if bars:
            rows.append(TimelineRow(worker, rowLabel(worker), bars))
    return rows


# ---------------------------------------------------------------------------------------
# Diagnosis


@dataclass
class Diagnosis:
    """What limited a run: ``limit`` is reading, computing, writing, waiting or unknown."""

    limit: str
    advice: str
    busy: dict[str, float] = field(default_factory=dict)
    walltime: float = 0.0

    def line(self) -> str:
        """The one-line summary printed at the end of ``Timers.formatReport``."""
        if self.limit == "unknown":
            return f"Limited by: not known ({self.advice})"
        shares = ", ".join(f"{role} {100 * self.busy.get(role, 0.0):.0f}%"
                           for role in ("reading", "computing", "writing", "waiting"))
        return f"Limited by {self.limit} (busy: {shares}): {self.advice}"


@dataclass
class _Lanes:
    """Per activity, the workers that did it, and per worker its seconds by activity."""

    workers: dict[str, set] = field(default_factory=dict)
    seconds: dict[str, dict[str, float]] = field(default_factory=dict)
    work: dict[str, float] = field(default_factory=dict)


def _lanes(timers, lo: float, hi: float) -> _Lanes:
    lanes = _Lanes()
    for worker, byName in _snapshot(timers).items():
        grouped = _activities(byName)
        lanes.seconds[worker] = {a: _unionLength(p, lo, hi) for a, p in grouped.items()}
        lanes.work[worker] = _unionLength(
            [p for a in WORK for p in grouped.get(a, [])], lo, hi)
        for activity, pairs in grouped.items():
            if pairs:
                lanes.workers.setdefault(activity, set()).add(worker)
    return lanes


def _fraction(lanes: _Lanes, activity: str, wall: float, workTime: bool = False) -> float:
    """Seconds of ``activity`` (or of any work, on its workers) / (walltime x its workers)."""
    workers = lanes.workers.get(activity, set())
    if not workers:
        return 0.0
    if workTime:
        seconds = sum(lanes.work[w] for w in workers)
    else:
        seconds = sum(lanes.seconds[w].get(activity, 0.0) for w in workers)
    return min(1.0, seconds / (wall * len(workers)))


def _readAdvice(readers: set) -> str:
    if any(w.startswith("read") for w in readers):
        return "try more read workers (numReadWorkers) or computeWorkersRead=True"
    if any(w.startswith("compute") for w in readers):
        return ("try more compute workers (numComputeWorkers), which read their own blocks, "
                "or read workers (numReadWorkers)")
    return "try read workers (numReadWorkers) or computeWorkersRead=True"


def _computeAdvice(computers: set, cpus: int) -> str:
    if len(computers) >= cpus:
        return (f"all {cpus} usable CPUs are already computing: a faster user function, or "
                "a machine with more CPUs, would help; more compute workers would not")
    return (f"try more compute workers (numComputeWorkers): {len(computers)} of the {cpus} "
            "usable CPUs computed")


WRITE_ADVICE = ("writing is the limit: fewer workers will not hurt; a faster output driver or "
                "lighter compression (setOutputDriverName / setCreationOptions) would help")


def _idleDiagnosis(start: float, waiting: float) -> tuple[str, str]:
    """(limit, advice) of a run in which no role was busy: the one thing the figures show."""
    if start >= START_LIMIT:
        return "starting workers", (
            f"starting the compute workers took {100 * start:.0f}% of the run, too much for a "
            "job this small; try fewer compute workers (numComputeWorkers) or CW_THREADS")
    if waiting >= WAIT_LIMIT:
        return "waiting", ("the roles waited for one another; try a larger memoryBudget (more "
                           "blocks in flight)")
    return "untimed work", ("most of the run is in no timer (opening files, Python between "
                            "blocks); larger blocks (setWindowSize) mean less of it per pixel")


def diagnose(timers, cpus: int | None = None) -> Diagnosis:
    """Say what limited the run and which ConcurrencyStyle change would help most.

    The rule, from the recorded intervals (overlapping intervals of one worker count once,
    everything is clipped to the ``walltime`` interval):

    1. For each role - reading, computing (userfunction, copy_output, summarising), writing (writing
       plus statistics, pyramids and beforeclose) - its *busy fraction* is the time its
       workers spent on it divided by (walltime x the number of workers that did it at
       all). Waiting is reported the same way over the workers that waited.
    2. A role's workers are *saturated* when their work of any role (not waiting) covers at
       least ``BUSY_LIMIT`` (half) of their time: with CW_NONE the main thread reads,
       computes and writes, so all three roles share it; with computeWorkersRead the
       compute workers both read and compute.
    3. The limit is the saturated role with the highest busy fraction (ties: writing, then
       computing, then reading). Advice: computing -> more compute workers
       (numComputeWorkers) while they use fewer than the usable CPUs, else a faster user
       function or more CPUs (never both: one action that can help on this machine);
       reading -> read workers (numReadWorkers) or computeWorkersRead=True; writing ->
       fewer workers will not hurt, the output driver or compression is what to change.
    4. When no role is saturated, the limit is the one the figures show: starting the
       workers when ``startcomputeworkers`` took at least ``START_LIMIT`` of the run; else
       waiting, when the workers that waited did so at least ``WAIT_LIMIT`` of their time
       (a larger memoryBudget gives more blocks in flight); else untimed work.

    ``cpus`` (default: the usable CPU count) only matters for the computing advice.
    """
    window = runWindow(timers)
    if window is None or window[1] <= window[0]:
        return Diagnosis("unknown", "no intervals recorded")
    lo, hi = window
    wall = hi - lo
    lanes = _lanes(timers, lo, hi)
    busy = {ROLE_OF[a]: _fraction(lanes, a, wall) for a in WORK}
    busy["waiting"] = _fraction(lanes, "wait", wall)
    saturated = [a for a in ("write", "compute", "read")
                 if _fraction(lanes, a, wall, workTime=True) >= BUSY_LIMIT]
    if not saturated:
        limit, advice = _idleDiagnosis(_fraction(lanes, "start", wall), busy["waiting"])
        return Diagnosis(limit, advice, busy, wall)
    limit = max(saturated, key=lambda a: busy[ROLE_OF[a]])
    if limit == "write":
        advice = WRITE_ADVICE
    elif limit == "compute":
        advice = _computeAdvice(lanes.workers["compute"], _cpuCount(cpus))
    else:
        advice = _readAdvice(lanes.workers["read"])
    return Diagnosis(ROLE_OF[limit], advice, busy, wall)


def _cpuCount(cpus):
    if cpus is not None:
        return cpus
    from .cpus import usableCpuCount
    return usableCpuCount()


def bottleneck(timers, cpus: int | None = None) -> str:
    """The diagnosis as one line (see :func:`diagnose`)."""
    return diagnose(timers, cpus).line()


# ---------------------------------------------------------------------------------------
# Drawing


def _matplotlib():
    """matplotlib's Figure and Agg canvas classes, or UnavailableError naming the fix."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
        from matplotlib.patches import Patch
    except ImportError as e:
        raise rioserrors.UnavailableError(MATPLOTLIB_HINT) from e
    return Figure, FigureCanvasAgg, Patch


def _drawRows(ax, rows):
    for y, row in enumerate(rows):
        for activity, bars in row.bars.items():
            height = 0.35 if activity == "wait" else 0.7
            ax.broken_barh(bars, (y - height / 2, height), facecolors=COLOURS[activity],
                           edgecolor="none")
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels([row.label for row in rows])
    ax.set_ylim(len(rows) - 0.5, -0.5)


def drawTimeline(timers, filename: str, title: str | None = None) -> str:
    """Draw the run's timeline to ``filename`` (PNG, or any format matplotlib infers).

    One row per read worker, compute worker and the writer (main thread); bars coloured by
    activity; waits drawn thinner; x in seconds from the start of the run. The title (default:
    the walltime) is followed by the diagnosis line. Returns ``filename``.
    """
    Figure, FigureCanvasAgg, Patch = _matplotlib()
    rows = timelineRows(timers)
    diagnosis = diagnose(timers)
    fig = Figure(figsize=(11, 1.6 + 0.42 * max(len(rows), 1)), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    _drawRows(ax, rows)
    ax.set_xlim(0, max(diagnosis.walltime, 1e-6))
    ax.set_xlabel("seconds from the start of the run")
    ax.grid(axis="x", alpha=0.3)
    used = [a for a in ACTIVITIES if any(a in row.bars for row in rows)]
    ax.legend(handles=[Patch(color=COLOURS[a], label=LEGEND[a]) for a in used],
              loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize="small", frameon=False)
    heading = title or f"apply() timeline: walltime {diagnosis.walltime:.2f} s"
    ax.set_title(heading + "\n" + textwrap.fill(diagnosis.line(), 120), fontsize="medium")
    fig.savefig(filename, bbox_inches="tight")
    return filename
