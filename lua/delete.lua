-- delete.lua: append an op=delete tombstone for each row the source marks deleted (soft delete),
-- exactly once, with the same dedup as emit.lua: the tombstone goes out when the pkey is new to
-- `seen`, its epoch is newer than the score there, or the same epoch carries another digest.
-- The key leaves `keys`, so a later reconcile never sends a second tombstone for it.
-- KEYS[1] stream   KEYS[2] seen (zset pkey -> epoch)   KEYS[3] digest (hash pkey -> digest)
-- KEYS[4] optional: keys (zset of the live keys the stream carries)
-- ARGV[1] variant  ARGV[2] maxlen (0: uncapped)
-- ARGV[3..] per row, four values: pkey, epoch (integer microseconds), digest, payload (the row as read)
-- Returns {emitted, duplicates}.
local stream, seen, digests, keyset = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local variant = ARGV[1]
local maxlen = tonumber(ARGV[2])
local emitted, duplicates = 0, 0

for i = 3, #ARGV, 4 do
  local pkey, epoch, digest, payload = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
  local last = redis.call('ZSCORE', seen, pkey)
  local fresh = not last
  if not fresh then
    local e, l = tonumber(epoch), tonumber(last)
    fresh = e > l or (e == l and redis.call('HGET', digests, pkey) ~= digest)
  end
  if fresh then
    local fields = {'payload', payload, 'variant', variant, 'epoch', epoch, 'pkey', pkey, 'op', 'delete'}
    if maxlen > 0 then
      redis.call('XADD', stream, 'MAXLEN', '~', maxlen, '*', unpack(fields))
    else
      redis.call('XADD', stream, '*', unpack(fields))
    end
    redis.call('ZADD', seen, epoch, pkey)
    redis.call('HSET', digests, pkey, digest)
    if keyset then redis.call('ZREM', keyset, pkey) end
    emitted = emitted + 1
  else
    duplicates = duplicates + 1
  end
end
return {emitted, duplicates}
