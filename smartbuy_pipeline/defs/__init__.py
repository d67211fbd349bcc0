"""Dagster wiring, one module per domain. Thin: each module calls the layers below it."""
