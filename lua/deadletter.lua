-- deadletter.lua: append each bad row (one that failed its checks, on_bad_row="dead_letter") to the
-- dead-letter stream, once per bad version: its identity (a digest of its values' text) is kept in
-- `dead_seen` in this same atomic call, so a re-read of the window, or a rerun of a failed cycle,
-- appends nothing again. A replay (marker not '') appends every row again, marked replay, and writes
-- nothing else. A version read again with a higher score (a row without an epoch is scored by the
-- read's clock) keeps the higher one, so it leaves `dead_seen` only once no window reads it.
-- KEYS[1] dead (stream)   KEYS[2] dead_seen (zset identity -> epoch, or the read's clock)
-- ARGV[1] variant  ARGV[2] maxlen (0: uncapped)  ARGV[3] replay marker ('' for a cycle)
-- ARGV[4..] per row, seven values: identity, score, error, column, pkey ('': none), epoch ('': none),
-- values (the row as a JSON object of texts)
-- Returns the number of dead letters appended.
local dead, dead_seen = KEYS[1], KEYS[2]
local variant, maxlen, marker = ARGV[1], tonumber(ARGV[2]), ARGV[3]
local appended = 0
for i = 4, #ARGV, 7 do
  local identity, score = ARGV[i], ARGV[i + 1]
  local known = marker == '' and redis.call('ZSCORE', dead_seen, identity)
  if known then
    if tonumber(score) > tonumber(known) then  -- read again later (no epoch): kept as long as it is read
      redis.call('ZADD', dead_seen, score, identity)
    end
  else
    local fields = {'error', ARGV[i + 2], 'column', ARGV[i + 3]}
    if ARGV[i + 4] ~= '' then
      fields[#fields + 1], fields[#fields + 2] = 'pkey', ARGV[i + 4]
    end
    if ARGV[i + 5] ~= '' then
      fields[#fields + 1], fields[#fields + 2] = 'epoch', ARGV[i + 5]
    end
    fields[#fields + 1], fields[#fields + 2] = 'values', ARGV[i + 6]
    fields[#fields + 1], fields[#fields + 2] = 'variant', variant
    if marker ~= '' then
      fields[#fields + 1], fields[#fields + 2] = 'replay', marker
    else
      redis.call('ZADD', dead_seen, score, identity)
    end
    xadd(dead, maxlen, unpack(fields))
    appended = appended + 1
  end
end
return appended
