"""Session analytics over call logs: plain functions, no Airflow import."""

from __future__ import annotations

from airflow_provider_ice.analytics.metrics import SessionMetrics, response_latencies, session_metrics
from airflow_provider_ice.analytics.summary import IntervalSummary, describe, percentile, summarise

__all__ = [
    "IntervalSummary",
    "SessionMetrics",
    "describe",
    "percentile",
    "response_latencies",
    "session_metrics",
    "summarise",
]
