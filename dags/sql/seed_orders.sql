-- Demo source for the YAML-configured DAGs: orders and their invoice lines (Postgres).
CREATE TABLE IF NOT EXISTS orders (
    id           bigint PRIMARY KEY,
    customer_id  bigint NOT NULL,
    status       text NOT NULL DEFAULT 'new',
    total        numeric(12, 2) NOT NULL DEFAULT 0,
    updated_at   timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX IF NOT EXISTS orders_updated_at ON orders (updated_at);
CREATE TABLE IF NOT EXISTS invoice_lines (
    order_id     bigint NOT NULL,
    line         integer NOT NULL,
    description  text NOT NULL,
    amount       numeric(12, 2) NOT NULL,
    modified_at  timestamp NOT NULL DEFAULT (clock_timestamp() AT TIME ZONE 'UTC'),
    PRIMARY KEY (order_id, line)
);
CREATE INDEX IF NOT EXISTS invoice_lines_modified_at ON invoice_lines (modified_at);
INSERT INTO orders (id, customer_id, status, total)
SELECT g, 1 + g % 1000, (ARRAY['new', 'paid', 'shipped'])[1 + g % 3], round((g * 53 % 50000) / 100.0, 2)
FROM generate_series(1, 300) AS g
ON CONFLICT (id) DO NOTHING;
INSERT INTO invoice_lines (order_id, line, description, amount)
SELECT o, l, 'Item ' || l || ' of order ' || o, round(((o * 7 + l * 13) % 20000) / 100.0, 2)
FROM generate_series(1, 300) AS o, generate_series(1, 2) AS l
ON CONFLICT (order_id, line) DO NOTHING;
