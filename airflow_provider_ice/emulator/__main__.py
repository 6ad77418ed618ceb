"""``python -m airflow_provider_ice.emulator``: same as the ``airflow-ice-emulator`` console script."""

from __future__ import annotations

import sys

from airflow_provider_ice.emulator.cli import main

if __name__ == "__main__":
    sys.exit(main())
