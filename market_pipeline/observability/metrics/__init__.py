"""Prometheus metrics of the pipeline and of Dagster, read at scrape time."""
