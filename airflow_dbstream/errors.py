"""The one error type a DAG author sees for bad input; it always says what to do."""

from __future__ import annotations


class DbStreamInputError(ValueError):
    """Bad input (SQL, columns, values, names): the cycle stops and the watermark stays put."""
