-- fence.lua: prepended to the scripts that only the lock holder may run (hooks/scripts.py's
-- FENCED_SCRIPTS) when the caller holds the stream's lock; first, before lib.lua.
-- The last KEYS entry is the lock, the last ARGV entry the holder's token; both are removed before
-- the script proper runs, so it sees its usual KEYS and ARGV. Read-only: a script's first write
-- must still be the one Redis checks against maxmemory. A holder whose lease expired, or was taken
-- over, writes nothing.
local fence_lock, fence_token = table.remove(KEYS), table.remove(ARGV)
if redis.call('GET', fence_lock) ~= fence_token then
  return redis.error_reply('DBSTREAM_LOCK_LOST ' .. fence_lock .. ' is no longer held by this cycle')
end
