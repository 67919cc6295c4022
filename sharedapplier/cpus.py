"""How many CPUs this process may really use.

``os.cpu_count()`` reports the machine's CPUs, which overstates what a process may use inside a
container (cgroup CPU quota), under ``taskset`` (affinity mask) or in a Slurm allocation.
:func:`usableCpuCount` counts what may really be used. The engine does not size worker pools
itself (the caller's ``ConcurrencyStyle`` says how many); the count caps CW_THREADS compute
workers in ``ConcurrencyStyle``'s checks, and gives the default worker counts of the
command-line tools and the compute advice of :mod:`.timeline`.
"""
import math
import os
from pathlib import Path

CGROUP_ROOT = "/sys/fs/cgroup"
PROC_SELF_CGROUP = "/proc/self/cgroup"
SLURM_VARIABLES = ("SLURM_CPUS_PER_TASK", "SLURM_CPUS_ON_NODE")


def usableCpuCount(environ=None, cgroup_root=CGROUP_ROOT,
                     proc_cgroup=PROC_SELF_CGROUP) -> int:
    """The number of CPUs this process may use (at least 1).

    The smallest of: the affinity mask, the cgroup v2 or v1 CPU quota of this process's cgroup
    (and its ancestors), and the Slurm CPU allocation (``SLURM_CPUS_PER_TASK``,
    ``SLURM_CPUS_ON_NODE``). The arguments exist so that tests can point it elsewhere.
    """
    environ = os.environ if environ is None else environ
    own_paths = _ownCgroupPaths(proc_cgroup)
    limits = [_affinityCount(),
              _cgroupV2Limit(Path(cgroup_root), own_paths.get("", "/")),
              _cgroupV1Limit(Path(cgroup_root), own_paths.get("cpu", "/")),
              _slurmLimit(environ)]
    return max(1, min(n for n in limits if n is not None))


def _affinityCount():
    """CPUs in this process's affinity mask (all CPUs where there is no such notion)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _readText(path):
    """The stripped text of a file, or None if it cannot be read."""
    try:
        return Path(path).read_text().strip()
    except (OSError, UnicodeDecodeError):
        return None


def _quotaCpus(quota, period):
    """CPUs allowed by a CFS quota/period pair (text or numbers); None when unlimited."""
    try:
        quota, period = int(quota), int(period)
    except (TypeError, ValueError):
        return None
    if quota <= 0 or period <= 0:
        return None
    return max(1, math.ceil(quota / period))


def _ownCgroupPaths(proc_cgroup):
    """Map controller name -> this process's cgroup path ("" is the cgroup v2 entry)."""
    text = _readText(proc_cgroup) or ""
    paths = {}
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        for controller in parts[1].split(","):
            paths.setdefault(controller, parts[2])
    return paths


def _dirsUpToRoot(root, own_path):
    """The directory of ``own_path`` under ``root`` and each of its ancestors up to ``root``."""
    parts = [p for p in own_path.split("/") if p]
    return [root.joinpath(*parts[:n]) for n in range(len(parts), -1, -1)]


def _smallest(values):
    """The smallest non-None value, or None."""
    values = [v for v in values if v is not None]
    return min(values) if values else None


def _cgroupV2Limit(root, own_path):
    """The tightest ``cpu.max`` quota from our cgroup v2 directory up to the root."""
    limits = []
    for directory in _dirsUpToRoot(root, own_path):
        fields = (_readText(directory / "cpu.max") or "").split()
        if len(fields) == 2 and fields[0] != "max":
            limits.append(_quotaCpus(fields[0], fields[1]))
    return _smallest(limits)


def _cgroupV1Limit(root, own_path):
    """The tightest ``cpu.cfs_quota_us``/``cpu.cfs_period_us`` quota of the v1 cpu controller."""
    limits = []
    for mount in ("cpu", "cpu,cpuacct", "cpuacct,cpu"):
        for directory in _dirsUpToRoot(root / mount, own_path):
            quota = _readText(directory / "cpu.cfs_quota_us")
            period = _readText(directory / "cpu.cfs_period_us")
            limits.append(_quotaCpus(quota, period))
    return _smallest(limits)


def _leadingInt(text):
    """The integer at the start of ``text`` (Slurm may append e.g. "(x2)"), or None."""
    digits = ""
    for char in (text or "").strip():
        if not char.isdigit():
            break
        digits += char
    return int(digits) if digits else None


def _slurmLimit(environ):
    """The Slurm CPU allocation from the environment, or None outside Slurm."""
    values = [_leadingInt(environ.get(name)) for name in SLURM_VARIABLES]
    return _smallest([v for v in values if v])
