-- trim.lua: forget versions that no later window can read again, in bounded chunks.
-- KEYS[1] seen (zset pkey -> epoch)   KEYS[2] digest (hash pkey -> version); or KEYS[1] alone,
-- dead_seen (zset identity -> epoch, the dead letters' dedup)
-- ARGV[1] cutoff in integer microseconds: members scored strictly below it go
-- ARGV[2] at most this many members in this call (keeps each call short)
-- Returns the number of members removed; the caller calls again while it equals ARGV[2].
local seen, digests = KEYS[1], KEYS[2]
local members = below(seen, ARGV[1], ARGV[2])
forget(seen, digests, members)
return #members
