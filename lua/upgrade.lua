-- upgrade.lua: one chunk of the rewrite of `<tag>:digest` that earlier builds wrote (a bare digest per
-- pkey) into versions ("<epoch>:<digest>", lib.lua's is_version), the epoch read from `seen`. Values
-- that are versions already are left alone, so an interrupted upgrade is simply run again.
-- KEYS[1] seen (zset pkey -> epoch)   KEYS[2] digest (hash pkey -> digest or version)
-- ARGV[1] the HSCAN cursor ('0' to begin)   ARGV[2] HSCAN's COUNT
-- ARGV[3] '1' when the bare digests are of today's format (kept: nothing is sent again); else each
--   becomes OTHER, which no digest equals: a row at the same epoch is sent once more
-- Returns {the next cursor ('0': done), the values rewritten}.
local seen, digests = KEYS[1], KEYS[2]
local OTHER = string.rep('-', 32)
local scan = redis.call('HSCAN', digests, ARGV[1], 'COUNT', tonumber(ARGV[2]))
local found, rewritten = scan[2], 0
for i = 1, #found, 2 do
  local pkey, value = found[i], found[i + 1]
  if not is_version(value) then
    local score = redis.call('ZSCORE', seen, pkey)
    if score then
      local digest = (ARGV[3] == '1' and #value == 32) and value or OTHER
      redis.call('HSET', digests, pkey, string.format('%.0f', tonumber(score)) .. ':' .. digest)
    else  -- no epoch to pair it with: the key is not in `seen`, so its next version is new anyway
      redis.call('HDEL', digests, pkey)
    end
    rewritten = rewritten + 1
  end
end
return {scan[1], rewritten}
