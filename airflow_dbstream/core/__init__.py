"""The pure core: window arithmetic, epochs, encoding, keys, the stream spec.

No Airflow, Redis, database-driver or threading import (checked by the layering contract).
"""
