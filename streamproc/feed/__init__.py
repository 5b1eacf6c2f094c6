"""Feeding real data into the events topic (``streamproc produce --from FILE``)."""
