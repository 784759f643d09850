-- commit.lua: end a cycle. The watermark only moves forward; the cycle's figures are recorded.
-- KEYS[1] state (hash)
-- ARGV[1] candidate watermark in integer microseconds ('' when the cycle read no row)
-- ARGV[2..] field, value pairs describing the cycle
-- Returns the committed watermark (false when there is none yet).
local state = KEYS[1]
local candidate = ARGV[1]
local current = redis.call('HGET', state, 'watermark')
local watermark = current
if candidate ~= '' and (not current or tonumber(candidate) > tonumber(current)) then
  watermark = candidate
  redis.call('HSET', state, 'watermark', watermark)
end
if #ARGV > 1 then
  redis.call('HSET', state, unpack(ARGV, 2))
end
return watermark
