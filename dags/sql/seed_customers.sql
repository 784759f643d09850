-- Demo source: a customers table such as a legacy CRM keeps (Postgres).
CREATE TABLE IF NOT EXISTS customers (
    id          bigint PRIMARY KEY,
    name        text NOT NULL,
    email       text NOT NULL,
    tier        text NOT NULL DEFAULT 'standard',
    balance     numeric(12, 2) NOT NULL DEFAULT 0,
    updated_at  timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX IF NOT EXISTS customers_updated_at ON customers (updated_at);
INSERT INTO customers (id, name, email, tier, balance)
SELECT g, 'Customer ' || g, 'customer' || g || '@example.com',
       (ARRAY['standard', 'gold', 'platinum'])[1 + g % 3], round((g * 37 % 10000) / 7.0, 2)
FROM generate_series(1, 1000) AS g
ON CONFLICT (id) DO NOTHING;
