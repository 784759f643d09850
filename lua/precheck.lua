#!lua flags=no-writes
-- precheck.lua: what `seen` and `digest` hold for a batch's pkeys, read only: the worker's precheck of
-- a mostly unchanged window (core/dedup.py); emit.lua still judges what it is then sent. The pkeys come
-- as one MessagePack array, so the worker packs one argument per batch instead of two per row.
-- KEYS[1] seen (zset pkey -> epoch)   KEYS[2] digest (hash pkey -> digest)
-- ARGV[1] the pkeys, a MessagePack array of strings
-- Returns {scores, digests}, one per pkey, in its order (nil: not in seen / no digest).
local seen, digests = KEYS[1], KEYS[2]
local pkeys = cmsgpack.unpack(ARGV[1])
local CHUNK = 1000
local scores, stored = {}, {}
for first = 1, #pkeys, CHUNK do
  local last = math.min(first + CHUNK - 1, #pkeys)
  local s = redis.call('ZMSCORE', seen, unpack(pkeys, first, last))
  local d = redis.call('HMGET', digests, unpack(pkeys, first, last))
  for r = first, last do
    scores[r], stored[r] = s[r - first + 1], d[r - first + 1]
  end
end
return {scores, stored}
