-- seed_emit.lua: the seed's published path, kept only as the benchmark's naive baseline.
-- One EVALSHA per row: skip the row when `seen` already holds an epoch at least as new,
-- else XADD it and record its epoch. (No digest: a new payload at an equal epoch is dropped.)
-- KEYS[1] stream   KEYS[2] seen (zset pkey -> epoch)
-- ARGV[1] pkey   ARGV[2] epoch (integer microseconds)   ARGV[3] payload   ARGV[4] variant
-- Returns 1 when the row was appended, 0 when it was a duplicate.
local last = redis.call('ZSCORE', KEYS[2], ARGV[1])
if last and tonumber(last) >= tonumber(ARGV[2]) then
  return 0
end
redis.call('XADD', KEYS[1], '*', 'payload', ARGV[3], 'variant', ARGV[4], 'epoch', ARGV[2], 'pkey', ARGV[1])
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
return 1
