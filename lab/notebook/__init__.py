"""What the notebooks use: the control panel and its widgets, the teaching helpers, raw TCP
probes, and the seed article's figures.
"""
