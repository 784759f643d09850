"""The demo's writer: keeps changing rows of the demo source, like the legacy application would.

Each round, in one transaction: a few customers change tier and balance, one order is placed with
two invoice lines, and an older order moves on (new -> paid -> shipped). Runs with psycopg 3 or
psycopg2 (the Airflow image has the latter). Used by docker-compose.yaml's writer service and by
scripts/demo.py.

    python scripts/demo_writer.py --dsn "host=127.0.0.1 user=postgres dbname=test" --seed --interval 1
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
from pathlib import Path

SEEDS = ("seed_customers.sql", "seed_orders.sql")
DEFAULT_SQL_DIR = Path(__file__).resolve().parent.parent / "dags" / "sql"


def connect(dsn: str):
    try:
        import psycopg
    except ImportError:
        import psycopg2

        return psycopg2.connect(dsn)
    return psycopg.connect(dsn)


def seed(conn, sql_dir: Path) -> None:
    """Create and fill the demo tables (idempotent: rerunning it changes nothing)."""
    with conn.cursor() as cur:
        for name in SEEDS:
            cur.execute((sql_dir / name).read_text())
    conn.commit()


def one_round(conn, rng: random.Random, customers: int = 3) -> dict[str, int]:
    """One transaction of changes; returns how many rows of each table it touched."""
    with conn.cursor() as cur:
        ids = rng.sample(range(1, 1001), customers)
        tier = rng.choice(["standard", "gold", "platinum"])
        cur.execute(
            "UPDATE customers SET tier = %s, balance = balance + %s, updated_at = clock_timestamp() "
            "WHERE id = ANY(%s)",
            (tier, round(rng.uniform(-50, 50), 2), ids),
        )
        changed = cur.rowcount
        cur.execute("SELECT coalesce(max(id), 0) + 1 FROM orders")
        (order_id,) = cur.fetchone()
        cur.execute(
            "INSERT INTO orders (id, customer_id, status, total, updated_at) "
            "VALUES (%s, %s, 'new', 0, clock_timestamp())",
            (order_id, rng.choice(ids)),
        )
        for line in (1, 2):
            cur.execute(
                "INSERT INTO invoice_lines (order_id, line, description, amount, modified_at) "
                "VALUES (%s, %s, %s, %s, clock_timestamp() AT TIME ZONE 'UTC')",
                (order_id, line, f"Item {line} of order {order_id}", round(rng.uniform(1, 200), 2)),
            )
        cur.execute(
            "UPDATE orders SET total = (SELECT sum(amount) FROM invoice_lines WHERE order_id = %s), "
            "updated_at = clock_timestamp() WHERE id = %s",
            (order_id, order_id),
        )
        cur.execute(
            "UPDATE orders SET status = CASE status WHEN 'new' THEN 'paid' ELSE 'shipped' END, "
            "updated_at = clock_timestamp() "
            "WHERE id = (SELECT id FROM orders WHERE status <> 'shipped' ORDER BY random() LIMIT 1)"
        )
    conn.commit()
    return {"customers": changed, "orders": 2, "invoice_lines": 2}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--dsn", default=os.environ.get("DEMO_SOURCE_DSN", "host=127.0.0.1 user=postgres dbname=test")
    )
    parser.add_argument("--interval", type=float, default=2.0, help="seconds between rounds")
    parser.add_argument("--rounds", type=int, default=0, help="stop after this many rounds (0: never)")
    parser.add_argument("--seed", action="store_true", help="create and fill the demo tables first")
    parser.add_argument("--sql-dir", type=Path, default=DEFAULT_SQL_DIR)
    args = parser.parse_args(argv)

    rng = random.Random()
    for attempt in range(60):  # the source database may still be starting (docker compose up)
        try:
            conn = connect(args.dsn)
            break
        except Exception as exc:
            if attempt == 59:
                raise
            print(f"writer: waiting for the source database: {exc}".strip(), file=sys.stderr)
            time.sleep(1)
    if args.seed:
        seed(conn, args.sql_dir)
    done = 0
    while not args.rounds or done < args.rounds:
        touched = one_round(conn, rng)
        done += 1
        print(f"writer: round {done}: " + " ".join(f"{k}={v}" for k, v in touched.items()), flush=True)
        if not args.rounds or done < args.rounds:
            time.sleep(args.interval)
    conn.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
