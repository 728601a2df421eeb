"""Metric providers: run a query, return a number; the judges decide."""
