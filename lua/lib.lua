-- lib.lua: the rules several scripts share, each written once. Redis scripts can neither require
-- another script nor define globals, so hooks/scripts.py prepends this text to the scripts that
-- use it (after fence.lua when fenced). It only defines local functions and runs no command, so a
-- script's first write is still its own.

-- Append one message to `stream`, capped at about `maxlen` entries (XADD MAXLEN ~) when maxlen > 0.
-- `...` are the message's field, value pairs: varargs pass without a table, so a call per row
-- allocates nothing.
local function xadd(stream, maxlen, ...)
  if maxlen > 0 then
    return redis.call('XADD', stream, 'MAXLEN', '~', maxlen, '*', ...)
  end
  return redis.call('XADD', stream, '*', ...)
end

-- The dedup rule: a version (epoch, digest) of a pkey is new when the pkey is not in `seen` (`last`
-- is false), its epoch is newer than the score there (`last`), or the epochs are equal and its
-- digest differs from the stored one (`last_digest`, false when none). With `last_digest` nil the
-- stored digest is read from the hash `digests`, and only when the epochs are equal.
local function is_new(epoch, digest, last, last_digest, digests, pkey)
  if not last then
    return true
  end
  local e, l = tonumber(epoch), tonumber(last)
  if e ~= l then
    return e > l
  end
  if last_digest == nil then
    last_digest = redis.call('HGET', digests, pkey)
  end
  return last_digest ~= digest
end

-- One bounded chunk: at most `limit` members of the zset `key` scored strictly below `cutoff`, lowest
-- first. `...` may be 'WITHSCORES' (then member, score pairs).
local function below(key, cutoff, limit, ...)
  return redis.call('ZRANGE', key, '-inf', '(' .. cutoff, 'BYSCORE', 'LIMIT', 0, tonumber(limit), ...)
end

-- Forget the versions of `pkeys` (a list, maybe empty): they leave `seen` and the digest hash (when
-- `digests` is given: the dead letters' `dead_seen` has none).
local function forget(seen, digests, pkeys)
  if #pkeys > 0 then
    redis.call('ZREM', seen, unpack(pkeys))
    if digests then redis.call('HDEL', digests, unpack(pkeys)) end
  end
end
