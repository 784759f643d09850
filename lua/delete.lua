-- delete.lua: append an op=delete tombstone for each row the source marks deleted (soft delete),
-- exactly once, with the same dedup as emit.lua (lib.lua's is_new against the stored version).
-- The key leaves `keys`, so a later reconcile never sends a second tombstone for it.
-- KEYS[1] stream   KEYS[2] seen (zset pkey -> epoch)   KEYS[3] digest (hash pkey -> version)
-- KEYS[4] optional: keys (zset of the live keys the stream carries)
-- ARGV[1] variant  ARGV[2] maxlen (0: uncapped)
-- ARGV[3] the rows, as emit.lua takes them: pkey, epoch (integer microseconds), version, payload (the
--   row as read) per row, in one flat MessagePack array of texts
-- Returns {emitted, duplicates}.
local stream, seen, digests, keyset = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local variant = ARGV[1]
local maxlen = tonumber(ARGV[2])
local row = cmsgpack.unpack(ARGV[3])
local emitted, duplicates = 0, 0

for i = 1, #row, 4 do
  local pkey, epoch, version, payload = row[i], row[i + 1], row[i + 2], row[i + 3]
  if is_new(version, redis.call('HGET', digests, pkey), epoch) then
    xadd(stream, maxlen, 'payload', payload, 'variant', variant, 'epoch', epoch, 'pkey', pkey, 'op', 'delete')
    redis.call('ZADD', seen, epoch, pkey)
    redis.call('HSET', digests, pkey, version)
    if keyset then redis.call('ZREM', keyset, pkey) end
    emitted = emitted + 1
  else
    duplicates = duplicates + 1
  end
end
return {emitted, duplicates}
