"""Measurement: the raw sample format, the catalogue of a run's figures, exact summaries, the
run's model (its outcome, summary, stages and ``--json`` object), the per-interval timeline,
the HdrHistogram ``.hgrm`` text, and queueing theory checks. Imports nothing else of the lab's
but the units and the errors.
"""
