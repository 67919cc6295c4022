"""The block engine: read workers, compute workers and one writer sharing memory slabs.

Data flows one way, read -> compute -> write, through the slots of a slab pool::

    read threads (readworkers)   or a compute worker that reads for itself, or the main
    |  claimFree: a FREE slot     thread between writes when nobody else reads
    |  and the next block
    v  GDAL ReadAsArray(buf_obj) straight into the slot's input views
    +------------------------------ input slab (slabpool) ------------------------------+
    | slot 0 | slot 1 | ... | slot n-1 |  one block each: every input, margin included |
    +-----------------------------------------------------------------------------------+
    |  markReady (ready sem +1)
    v
    compute workers (computeworkers: threads; processes: processes; remote.proxy: one
    |  thread per remote worker, trading the block over the channel)
    |  takeReady: the lowest READY block (block 0 first: it fixes the output layout)
    |  the user function on zero-copy views; outputs copied once into the output slab,
    |  and summarised for the writer (blocksummary: statistics, counts, overview pieces)
    v  markComputed: block -> slot in the header; rings the doorbell when worth it
    +------------------------------ output slab (slabpool) -----------------------------+
    | slot 0 | slot 1 | ... | slot n-1 |  every output, margin stripped                |
    +-------------------------- summary slab, same slot index --------------------------+
    | record 0 | ...  | record n-1 |  per output: what the writer merges of the block   |
    +-----------------------------------------------------------------------------------+
    |  writer (main thread): computedRun from the next block to write, in block order
    v  GDAL writes the pixels and overview pieces, merges the summaries into the single-pass
       accumulators (no per-pixel work); handBack frees each slot (free sem +1)

Every route runs the same stages (``stages``): a worker is one ``WorkerLoop`` over a block
source, a compute stage and a sink; with no workers the main thread runs that loop reading
and writing each block itself. Messages between parties are the frozen classes of
``messages``; each is announced on the board before it goes through a pipe, so the
writer reads pipes only when told to, and every failure arrives as a ``WorkerFailed``
(``inbox``). ``watch`` notices dead workers and timeouts within POLL_SECONDS.

State, and who may change it:

* The slot table (per slot: state FREE/FILLING/READY/COMPUTING/COMPUTED, block, holder,
  when its user function started) and the run counters (blocks filled, taken, computed,
  written; messages announced; whether the writer waits; the batch that wakes it) live in
  the pool's header segment. Only ``slots.SlotBoard`` changes them, under the run's lock
  (``SlotSignals.lock``); the STARTED column alone is written without it, by the slot's
  holder. Each transition belongs to one party: readers claim and mark ready, compute
  workers take and mark computed, the writer hands back.
* The semaphores ``free`` and ``ready`` count FREE and READY slots; ``doorbell`` wakes the
  writer; ``stop`` ends every wait. Made by the main process, shared with its workers.
  Compute processes stay for later runs (``workerpool``): a semaphore reaches a process
  only as it starts, so the signals belong to a *worker set* (its processes and the
  signals they started with), which one run leases at a time, and the main process resets
  them (``SlotSignals.reset``: counts drained, ``free`` refilled, ``stop`` cleared) as it
  leases the set, when none of its workers can touch them: a worker touches them only
  between its ``RunForWorker`` and its ``WorkerFinished``, and a set goes back idle only
  when every worker it lent sent ``WorkerFinished`` (and no read thread lives on).
  Any other end of a run tears its set down, idle workers included (pipes closed, then
  killed after 3 s, joined); the next run starts fresh ones. A run of more workers than
  the idle set has starts the rest in the same set; a run of fewer uses its first ones.
  Concurrent runs each lease their own set; the larger stays idle afterwards.
* What a run tells its workers travels per run, through each worker's pipe
  (``RunForWorker``): the pickled job (user function, otherArgs, blocks), which each worker
  unpickles into its own otherArgs copy, the slab names, the main process's folder and
  import path. Nothing of a run survives it in a worker but imported modules.
* The slabs' pixels: a slot's input views belong to whoever holds the slot (FILLING:
  its reader; COMPUTING: its worker); its output views to its worker until it is
  COMPUTED, then to the writer until handed back.
* The output layout is fixed once, by the main process, from block 0 (``inbox``), which
  then creates the files, makes the output and summary slabs and tells every worker
  (``OutputsReady``, with each output's ``SummaryPlan``). A slot's summary records belong
  to whoever holds its output views.
* The single-pass accumulators of each file are the writer's alone; it merges the records
  in block order, which keeps statistics identical to the last bit to a run without
  workers.
* Each worker's otherArgs copy and timers are its own until it sends ``WorkerFinished``.
* A compute process that dies: the main process alone, under the lock, moves the slots it
  was filling (it read its own blocks) to REDO, which ``claimFree`` hands out before new
  blocks, and takes the slots it was computing (read threads fed it) to read them again
  itself and mark them READY (``recovery``); then it starts another process under its
  number.

Who owns what: the main process creates and unlinks every segment (names start with
``sa_<pid>_<random>_``) and every semaphore; compute processes attach by name, untracked,
and detach at the end of each run. Idle compute processes are daemons, stopped by an
``atexit`` hook, and each exits by itself once its main process is gone.
Remote workers cannot map the slabs: each is served by a proxy thread of the main
process that holds slots as a compute thread does (``remote``); a launcher
(``sharedapplier.launchers``) only starts, watches and cancels their jobs.
"""
