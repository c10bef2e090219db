"""The load generator's internals: the load specification, the engine that runs in each
worker process (local or on a Dask worker) and the lanes it drives (HTTP, WebSocket), the
recorder, response parsing, the precise timer, calibration, the result and its text report,
and the :class:`~lab.engine.run.Run` every kind of run is.

The front of this part is :mod:`lab.loadgen` (``run_load`` / ``start_load``); nothing here
imports the server.
"""
