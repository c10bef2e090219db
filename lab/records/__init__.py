"""Experiment records: the record, where it ran, the data folder, atomic files, exports,
comparisons and plots. Storage (``store``) never imports presentation (``compare``, ``plots``).
"""
