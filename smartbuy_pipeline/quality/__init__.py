"""Data-quality checks over pipeline batches (pure: pandas in, a report out; no Dagster, no DB)."""

from __future__ import annotations

from smartbuy_pipeline.quality.price_checks import (
    ALLOWED_AVAILABILITY,
    ALLOWED_STATUS,
    QualityReport,
    validate_observations,
)

__all__ = ["ALLOWED_AVAILABILITY", "ALLOWED_STATUS", "QualityReport", "validate_observations"]
