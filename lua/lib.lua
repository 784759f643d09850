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

-- Epochs travel as integer texts: the worker's, and a score as ZMSCORE/ZSCORE write it ("%.17g", the
-- same digits for an integer up to 2^53). So equal texts are equal epochs, and two non-negative texts
-- of one length up to 16 digits, none above 2^53, compare as texts do: no text is read as a number
-- (strtod of 16 digits), except for a sign, another length, or a value a double may round.
local EXACT = '9007199254740992'  -- 2^53

-- -1, 0 or 1 as the epoch text `a` is earlier than, equal to or later than `b`.
local function compare(a, b)
  if a == b then
    return 0
  end
  local n = #a
  if n == #b and n <= 16 and a >= '0' and b >= '0' and (n < 16 or (a <= EXACT and b <= EXACT)) then
    return a < b and -1 or 1
  end
  local x, y = tonumber(a), tonumber(b)
  return x < y and -1 or (x > y and 1 or 0)
end

-- The dedup rule: a version (epoch, digest) of a pkey is new when the pkey is not in `seen` (`last`
-- is false), its epoch is newer than the score there (`last`), or the epochs are equal and its
-- digest differs from the stored one (`last_digest`, false when none). With `last_digest` nil the
-- stored digest is read from the hash `digests`, and only when the epochs are equal.
local function is_new(epoch, digest, last, last_digest, digests, pkey)
  if not last then
    return true
  end
  local order = compare(epoch, last)
  if order ~= 0 then
    return order > 0
  end
  if last_digest == nil then
    last_digest = redis.call('HGET', digests, pkey)
  end
  return last_digest ~= digest
end

-- What `seen` and `digests` hold for a batch: `row` is a flat array of `width` texts per row, pkey
-- then epoch first. Returns per row its score in `seen` (false: absent) and, only for the rows whose
-- epoch equals their score (the only ones is_new compares digests of), the stored digest (false:
-- none). Read for 1000 rows per call rather than per row.
local function known(seen, digests, row, width)
  local rows, CHUNK = #row / width, 1000
  local pkeys, scores, stored = {}, {}, {}
  for r = 1, rows do
    pkeys[r] = row[width * (r - 1) + 1]
  end
  for first = 1, rows, CHUNK do
    local last = math.min(first + CHUNK - 1, rows)
    local s = redis.call('ZMSCORE', seen, unpack(pkeys, first, last))
    local tied, at, t = {}, {}, 0
    for r = first, last do
      local score = s[r - first + 1]
      scores[r] = score
      if score and compare(score, row[width * (r - 1) + 2]) == 0 then
        t = t + 1
        tied[t], at[t] = pkeys[r], r
      end
    end
    if t > 0 then
      local d = redis.call('HMGET', digests, unpack(tied))
      for k = 1, t do
        stored[at[k]] = d[k]
      end
    end
  end
  return scores, stored
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
