"""Outbound campaign logic: recipients, scheduling, the attempt ledger and results (no Airflow import)."""
