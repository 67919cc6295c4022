"""``sharedapplier computeworker``: the program a remote compute worker runs.

Launchers start it as a batch job (or a local subprocess). It reads the channel address,
connects back to the main process, pulls blocks until none are left, returns its otherArgs
and exits.
"""
from __future__ import annotations

import argparse
import os
import sys

from .. import rioserrors

PROG = "sharedapplier computeworker"
DESCRIPTION = (
    "Run one remote compute worker of a sharedapplier job: connect to the main process "
    "named by --channaddrfile (or --channaddr), compute blocks until none are left, return "
    "otherArgs, exit. Launchers start this for you; you do not normally run it by hand.")


def addArguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-i", "--idnum", type=int, default=None,
                        help="worker number (default: the array index the scheduler sets)")
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--channaddrfile", metavar="PATH",
                       help="file holding the channel address and key (mode 0600)")
    where.add_argument("--channaddr", metavar="HOST,PORT,KEY",
                       help="the channel address and key (visible to other users: prefer "
                            "--channaddrfile)")
    where.add_argument("--channaddrsecret", metavar="SECRET_ID",
                       help="AWS Secrets Manager secret holding the channel address")


def run(args) -> int:
    from .. import launchers
    from ..engine.remote import worker
    workerID = args.idnum
    if workerID is None:
        workerID = launchers.workerNumberFromEnvironment()
    if workerID is None:
        print(f"{PROG}: error: no worker number: give -i, or run as an array job",
              file=sys.stderr)
        return 2
    try:
        if args.channaddrfile:
            address = launchers.ChannelAddress.fromFile(args.channaddrfile)
        elif args.channaddr:
            address = launchers.ChannelAddress.fromString(args.channaddr)
        else:
            from ..launchers.awsbatch import addressFromSecret
            address = addressFromSecret(args.channaddrsecret)
        print(f"{PROG} {workerID}: connecting to {address.hostname}:{address.portnum}",
              flush=True)
        status = worker.runRemoteWorker(address, workerID)
    except (rioserrors.RiosError, OSError) as e:
        print(f"{PROG} {workerID}: error: {e}", file=sys.stderr)
        return 1
    print(f"{PROG} {workerID}: finished with status {status}", flush=True)
    return status


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog=PROG, description=DESCRIPTION)
    addArguments(parser)
    return run(parser.parse_args(argv))


def exitNow(status: int) -> None:
    """End the worker without the interpreter's slow teardown: its job is done."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)


if __name__ == "__main__":
    exitNow(main())
