-- Orders changed since the window start (bound by the operator).
SELECT id, customer_id, status, total, updated_at
FROM orders
WHERE updated_at >= %(window_start)s
ORDER BY updated_at
