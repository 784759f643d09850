-- Customers changed since the window start (bound by the operator, never string-formatted).
-- An index on updated_at keeps this cheap: CREATE INDEX ON customers (updated_at);
SELECT id, name, email, tier, balance, updated_at
FROM customers
WHERE updated_at >= %(window_start)s
ORDER BY updated_at
