-- sweep.lua: the hard deletes a reconcile found, in bounded chunks. A member of `keys` scored below
-- the cutoff was neither seen in the source by this reconcile's key scan nor emitted since the cutoff:
-- its row is gone. Each gets one op=delete tombstone (payload null, epoch = the last time the key was
-- known present: its last version's epoch or the last reconcile that saw it) and leaves `keys`, so
-- the next reconcile does not send it again. It leaves `seen` too: if the key comes back, even with
-- its old epoch and content, it is a new version.
-- KEYS[1] stream   KEYS[2] seen   KEYS[3] digest   KEYS[4] keys (zset pkey -> epoch last known present)
-- ARGV[1] variant  ARGV[2] maxlen (0: uncapped)  ARGV[3] cutoff (integer microseconds)
-- ARGV[4] at most this many tombstones in this call (keeps each call short)
-- Returns the number of tombstones; the caller calls again while it equals ARGV[4].
local stream, seen, digests, keyset = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local variant, maxlen, cutoff = ARGV[1], tonumber(ARGV[2]), ARGV[3]
local gone = below(keyset, cutoff, ARGV[4], 'WITHSCORES')
local pkeys = {}
for i = 1, #gone, 2 do
  local pkey, epoch = gone[i], string.format('%.0f', tonumber(gone[i + 1]))
  xadd(stream, maxlen, 'payload', 'null', 'variant', variant, 'epoch', epoch, 'pkey', pkey, 'op', 'delete')
  pkeys[#pkeys + 1] = pkey
end
if #pkeys > 0 then
  redis.call('ZREM', keyset, unpack(pkeys))
end
forget(seen, digests, pkeys)
return #pkeys
