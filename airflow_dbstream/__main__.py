"""Command line: ``python -m airflow_dbstream status (--stream KEY | --all | --pattern GLOB) [...]``.

The same command as ``airflow dbstream status`` (airflow_dbstream/cli.py), for a Python that has the
provider installed and AIRFLOW_HOME (or AIRFLOW__* variables) pointing at the deployment's configuration.
"""

from __future__ import annotations

import argparse
import sys

from airflow_dbstream.cli import ARGUMENTS, DESCRIPTION, run_status


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m airflow_dbstream", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    status = commands.add_parser("status", help=DESCRIPTION.split(".")[0], description=DESCRIPTION)
    for flags, keywords in ARGUMENTS:
        status.add_argument(*flags, **keywords)
    return run_status(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
