-- Invoice lines changed since the window start; the key is composite: (order_id, line).
SELECT order_id, line, description, amount, modified_at
FROM invoice_lines
WHERE modified_at >= %(window_start)s
ORDER BY modified_at
