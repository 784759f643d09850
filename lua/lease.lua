#!lua flags=allow-oom
-- lease.lua: the stream's cycle lock, one holder at a time. A lease that is not renewed expires on
-- its own, so a lock left by a killed worker frees itself. allow-oom: the lock is a few bytes, and
-- a Redis at maxmemory must fail on XADD with a clear error, not here.
-- KEYS[1] lock   ARGV[1] 'acquire' | 'renew' | 'release'   ARGV[2] token   ARGV[3] lease in ms
-- acquire returns {1} when taken, else {0, holder's token, ms left}; renew/release return 1 when
-- the token still holds the lock, else 0 (the lease expired or another cycle took over).
local lock, op, token = KEYS[1], ARGV[1], ARGV[2]
if op == 'acquire' then
  if redis.call('SET', lock, token, 'NX', 'PX', ARGV[3]) then
    return {1}
  end
  local holder = redis.call('GET', lock) or ''
  return {0, holder, redis.call('PTTL', lock)}
end
if redis.call('GET', lock) ~= token then
  return 0
end
if op == 'renew' then
  redis.call('PEXPIRE', lock, ARGV[3])
else
  redis.call('DEL', lock)
end
return 1
