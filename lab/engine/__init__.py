"""The load generator's internals: the load specification, the engine that runs in each
worker process, the recorder, response parsing, the precise timer, calibration, the result
and its text report.

The front of this part is :mod:`lab.loadgen` (``run_load`` / ``start_load``); nothing here
imports the server.
"""
