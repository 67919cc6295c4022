"""Compute workers elsewhere: the channel they connect back on, the proxy threads that
serve them in the main process, and the worker's own body.

    channel.py        the authenticated listener (ChannelListener, WorkerChannel)
    wire.py           arrays as raw bytes after a message naming them
    link.py           one worker's connection seen from its proxy: heartbeats, liveness
    proxy.py          WorkerProxy (one per worker) and RemoteWorkers (the set)
    worker.py         ``sharedapplier computeworker``: connect, pull blocks, send results
    sharedobjects.py  RIOS's structures.NetworkDataChannel: objects served over the channel
"""
