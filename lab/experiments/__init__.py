"""Experiments built from many runs: sweeps of server knobs over interleaved rounds.

A single pair of runs proves nothing on a shared machine (guide, section 3, principle 9):
:mod:`lab.experiments.sweeps` runs every setting once per round, in an order shuffled anew in
each round, against a server in its own process, and :mod:`lab.experiments.effects` turns the
rounds into a ratio with an interval.
"""
