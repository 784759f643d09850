-- A customer and its address as one message (Postgres and MySQL/MariaDB alike). The change time is
-- the later of the two rows' timestamps, so an edit to either table sends the customer again; use
-- epoch_column="changed_at". Each table's updated_at is filtered on its own so both indexes serve.
SELECT c.id, c.name, c.email, a.street, a.city,
       GREATEST(c.updated_at, COALESCE(a.updated_at, c.updated_at)) AS changed_at
FROM customers AS c
LEFT JOIN customer_addresses AS a ON a.customer_id = c.id
WHERE c.updated_at >= %(window_start)s
   OR a.updated_at >= %(window_start)s
