"""The server's internals: its configuration, the listener and timers of one event loop, the
reading of HTTP/1.1 requests from bytes (no socket, no loop), one connection around it,
requests and responses, routing, and the demo routes.

The front of this part is :mod:`lab.server` (``start_server`` and the handle); nothing here
imports the load generator.
"""
