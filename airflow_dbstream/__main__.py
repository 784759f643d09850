"""Command line: ``python -m airflow_dbstream status --redis-conn-id ID --stream KEY [--json]``."""

from __future__ import annotations

import argparse
import json
import sys

from airflow_dbstream.core.errors import DbStreamInputError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m airflow_dbstream", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    status = commands.add_parser(
        "status", help="watermark, lag, sizes, the last cycle and consumer groups of a stream"
    )
    status.add_argument("--redis-conn-id", default="redis_default", help="an Airflow redis connection")
    status.add_argument("--stream", required=True, help="the stream key, e.g. customers")
    status.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)

    from airflow_dbstream.core.figures import format_status
    from airflow_dbstream.core.keys import StreamKeys
    from airflow_dbstream.hooks.redis_stream import RedisStreamHook
    from airflow_dbstream.hooks.status import stream_status

    try:
        keys = StreamKeys.for_stream(args.stream)
    except DbStreamInputError as exc:
        parser.error(str(exc))
    client = RedisStreamHook(args.redis_conn_id).get_conn()
    figures = stream_status(client, keys)
    print(json.dumps(figures, indent=2) if args.json else format_status(figures))
    if figures["watermark_us"] is None and figures["stream_length"] == 0 and figures["last_cycle"] is None:
        print(
            f"status: stream {args.stream!r} has no messages and no state on connection "
            f"{args.redis_conn_id!r}: check the stream key and the connection's db.",
            file=sys.stderr,
        )
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
