"""Measurement: the raw sample format, exact summaries, the per-interval timeline, the
HdrHistogram ``.hgrm`` text, and queueing theory checks. Imports nothing else of the lab's
but the units.
"""
