-- reset.lua: forget a stream's dedup state and watermark (and a snapshot's progress, kept in `state`),
-- keep its messages and `keys`: the next cycle is a first cycle again. One atomic call, so no cycle
-- ever sees `seen` gone but the watermark still there.
-- KEYS[1] seen   KEYS[2] digest   KEYS[3] state (hash)   KEYS[4] dead_seen (the dead letters' dedup:
-- the next first load dead-letters its bad rows again; the dead stream itself is kept)
-- ARGV[1] a note of the reset (JSON), kept in state as last_reset
-- Returns 1.
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[4])
redis.call('HSET', KEYS[3], 'last_reset', ARGV[1])
return 1
