"""``sharedapplier jobscript``: print what a batch kind would submit, without submitting."""
from __future__ import annotations

import argparse
import json
import sys

from .. import launchers, rioserrors
from ..structures import ConcurrencyStyle

DESCRIPTION = (
    "Print the job script (or, for CW_AWSBATCH, the submit_job request) that a run with "
    "the given computeWorkerKind and computeWorkerExtraParams would submit, with the "
    "defaults of your config file applied, and submit nothing. The run directory, made "
    "only when a run starts, shows as sharedapplier_run_XXXXXXXX, and the channel's "
    "address and key as placeholders. From a script, "
    "sharedapplier.launchers.previewJobScripts(style) gives the same.")


def addArguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("kind", help="the batch kind: " + ", ".join(launchers.launcherKinds())
                        + " (the CW_ may be left out; any case)")
    parser.add_argument("-n", "--workers", type=int, default=2,
                        help="numComputeWorkers (default: 2)")
    parser.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                        help="one computeWorkerExtraParams entry; VALUE is read as JSON when "
                             "it is JSON (a number, a list) and as a string otherwise, e.g. "
                             "--param wallTime=02:00:00 --param 'sbatchOptions=[\"--qos=low\"]'"
                             "; may be repeated")
    parser.add_argument("--jobname", default="", help="controls.setJobName (default: none)")
    parser.add_argument("--tempdir", default=".",
                        help="controls.setTempdir, where the run directory goes (default: .)")
    parser.add_argument("--no-shared-temp", action="store_true",
                        help="haveSharedTemp=False: workers do not see the run directory")


def run(args: argparse.Namespace, prog: str) -> int:
    try:
        style = ConcurrencyStyle(computeWorkerKind=kindNamed(args.kind),
                                 numComputeWorkers=args.workers,
                                 computeWorkerExtraParams=extraParams(args.param),
                                 haveSharedTemp=not args.no_shared_temp)
        scripts = launchers.previewJobScripts(style, args.jobname, args.tempdir)
    except (rioserrors.RiosError, ValueError) as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 2
    for name, text in scripts.items():
        if len(scripts) > 1:
            print(f"==> {name} <==")
        sys.stdout.write(text)
    return 0


def kindNamed(text: str) -> str:
    """``slurm``, ``CW_SLURM``, ``cw_slurm`` -> ``CW_SLURM``."""
    kind = text.strip().upper()
    return kind if kind.startswith("CW_") else "CW_" + kind


def extraParams(pairs: list[str]) -> dict:
    """``KEY=VALUE`` arguments as computeWorkerExtraParams."""
    params = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"--param {pair!r} is not KEY=VALUE")
        try:
            params[key] = json.loads(value)
        except ValueError:
            params[key] = value
    return params
