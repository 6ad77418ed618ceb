"""The ICE OpenAPI client: signing, models, typed errors, sync and async clients. No Airflow imports."""
