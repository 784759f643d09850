-- precheck.lua: which rows of a batch emit.lua would append now. Read-only, and only a filter: the
-- emit script still decides atomically for the rows sent to it.
-- KEYS[1] seen (zset pkey -> epoch)   KEYS[2] digest (hash pkey -> digest)
-- ARGV: per row, three values: pkey, epoch (integer microseconds), digest
-- Returns the row numbers (1-based) of the rows new to `seen`, newer than their score, or at their
-- score with another digest: emit.lua's rule, compared here so that no payload crosses the network
-- for an unchanged row. A batch that repeats a pkey gets every row back (emit.lua compares a repeat
-- with the version just before it).
local seen, digests = KEYS[1], KEYS[2]
local rows = #ARGV / 3
local CHUNK = 1000

local pkeys, repeated, fresh = {}, {}, {}
for r = 1, rows do
  local pkey = ARGV[3 * r - 2]
  if repeated[pkey] then
    for i = 1, rows do fresh[i] = i end
    return fresh
  end
  repeated[pkey] = true
  pkeys[r] = pkey
end

local n = 0
for first = 1, rows, CHUNK do
  local last = math.min(first + CHUNK - 1, rows)
  local scores = redis.call('ZMSCORE', seen, unpack(pkeys, first, last))
  local stored = redis.call('HMGET', digests, unpack(pkeys, first, last))
  for r = first, last do
    local score, digest = scores[r - first + 1], stored[r - first + 1]
    local new = not score
    if not new then
      local e, s = tonumber(ARGV[3 * r - 1]), tonumber(score)
      new = e > s or (e == s and digest ~= ARGV[3 * r])
    end
    if new then
      n = n + 1
      fresh[n] = r
    end
  end
end
return fresh
