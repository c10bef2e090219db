"""The server's internals: its configuration, the listener and timers of one event loop, one
connection's HTTP/1.1, requests and responses, routing, and the demo routes.

The front of this part is :mod:`lab.server` (``start_server`` and the handle); nothing here
imports the load generator.
"""
