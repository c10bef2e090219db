"""Experiment records: the record, where it ran, the data folder, atomic files, exports,
comparisons, plots and the HTML report to share. Storage (``store``) never imports presentation
(``compare``, ``plots``, ``html_report``).
"""
