"""The block engine: read workers, compute workers and one writer sharing memory slabs.

Data flows one way, read -> compute -> write, through slots of shared memory::

    main process                                         compute workers (CW_PROCESSES:
    ------------                                         spawned processes; CW_THREADS:
                                                         threads of the main process)
    read threads ----GDAL ReadAsArray(buf_obj)-----+
    (or each compute process reads for itself)     |
                                                   v
         +------------------- input slab ------------------------+
         | slot 0 | slot 1 | ... | slot n-1 |   one block each,   |
         +---------------------------------+   every input,      |
              ^ free sem (free slots)          margin included   |
              |                                                   |
              |       ready sem (input-complete slots) ------> worker takes the lowest
              |                                                ready block, calls the user
              |                                                function on zero-copy views
         +------------------- output slab -----------------------+
         | slot 0 | slot 1 | ... | slot n-1 |  <- worker copies its outputs in (one copy),
         +----------------------------------+     notes block -> slot in the header and,
              ^                                   if the waiting writer now has a batch
              |                                   (half the slots, or the last block),
              |                                   rings the doorbell sem
              |                                                    |
    writer (main thread) <-----------------------------------------+
    wakes on the doorbell, writes every slot that is next in block order from its views
    (GDAL), single-pass stats, and frees each slot once written (free sem); with nothing
    to write it asks to be woken (WRITER_WAITING in the header); when it had waited (the
    workers are the bottleneck) it also flushes finished rows of blocks to the files.

    header segment: per slot (state FREE/FILLING/READY/COMPUTING/COMPUTED, block, worker),
    the run counters (blocks filled, taken, computed, written; messages; whether the
    writer waits), and per block the slot holding it once computed; changed only under the
    run's lock.

Who owns what: the main process creates and unlinks every segment (names start with
``sa_<pid>_<random>_``) and every semaphore; workers attach by name, untracked. Nothing
crosses a pipe per block, and pixels never do: a worker's few messages (the first block's
output layout, an error, its results at the end) are announced by a ring of the doorbell.
The writer's waits on the doorbell are short (POLL_SECONDS), and between them it checks the
pipes and whether every worker is alive, so an exception or a dead worker is noticed
within a fraction of a second; every other wait is bounded by a RIOS timeout. With no
workers the same stage functions run one after another in the main thread.

Remote workers (CW_SUBPROC, CW_SLURM, CW_PBS, CW_AWSBATCH and launchers of other packages)
run elsewhere, so they cannot map the slabs. Each is served by a proxy thread of the main
process that takes slots exactly as a compute thread does and trades pixels with its
worker over an authenticated socket (``remoteworkers``, ``channel``); the launcher
(``sharedapplier.launchers``) only starts, watches and cancels the jobs.
"""
from __future__ import annotations

from .runner import runBlocks

__all__ = ["runBlocks"]
