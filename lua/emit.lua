-- emit.lua: append each new or changed row version to the stream, exactly once.
-- A version is emitted when it is new to the hash `digest` (lib.lua's is_new). XADD, ZADD and HSET
-- run in this one atomic call, so the stream and the dedup state never disagree.
-- KEYS[1] stream   KEYS[2] seen (zset pkey -> epoch)   KEYS[3] digest (hash pkey -> version)
-- KEYS[4] optional: keys (zset pkey -> epoch, the live keys the stream carries, for reconcile)
-- ARGV[1] variant  ARGV[2] maxlen (0: uncapped)
-- ARGV[3] the rows: one flat MessagePack array of four texts per row: pkey, epoch (integer
--   microseconds), version ("<epoch>:<digest>"), payload (core/rows.py's pack_rows)
-- Returns {emitted, duplicates, the lowest epoch emitted ('' when none)}: a row emitted with an
-- epoch below the previous watermark was late, by that much (the guard's observed lateness).
-- The stored versions are read (lib.lua's known), and `seen`/`digest` written, for CHUNK rows per
-- call rather than per row. A pkey that appears twice in one batch is compared with its version
-- emitted just before.
local stream, seen, digests, keyset = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local variant = ARGV[1]
local maxlen = tonumber(ARGV[2])
local row = cmsgpack.unpack(ARGV[3])
local rows = #row / 4
local CHUNK = 1000
local emitted, duplicates = 0, 0
local lowest = nil

local stored = known(digests, row, 4)

local earlier = {}  -- pkey -> the version emitted earlier in this batch
local adds, sets, n = {}, {}, 0  -- ZADD score/member and HSET field/value pairs of what was emitted
for r = 1, rows do
  local i = 4 * r - 3
  local pkey, epoch, version = row[i], row[i + 1], row[i + 2]
  if is_new(version, earlier[pkey] or stored[r], epoch) then
    xadd(stream, maxlen, 'payload', row[i + 3], 'variant', variant, 'epoch', epoch, 'pkey', pkey)
    earlier[pkey] = version
    n = n + 2
    adds[n - 1], adds[n], sets[n - 1], sets[n] = epoch, pkey, pkey, version
    emitted = emitted + 1
    if not lowest or compare(epoch, lowest) < 0 then
      lowest = epoch
    end
  else
    duplicates = duplicates + 1
  end
end

for first = 1, n, 2 * CHUNK do
  local last = math.min(first + 2 * CHUNK - 1, n)
  redis.call('ZADD', seen, unpack(adds, first, last))
  redis.call('HSET', digests, unpack(sets, first, last))
  if keyset then redis.call('ZADD', keyset, 'GT', unpack(adds, first, last)) end
end
return {emitted, duplicates, lowest or ''}
