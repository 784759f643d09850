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

-- Epochs travel as the worker's integer texts (no leading zero, '-' for a sign), and the versions
-- keep them so. Such texts compare exactly without being read as numbers (no strtod of 16 digits,
-- no rounding above 2^53): equal texts are equal epochs; a negative one is the smaller; of two of one
-- sign the longer has the larger magnitude, and of one length the greater text. Lua compares
-- strings by the server's locale (Redis sets LC_COLLATE from its environment), which orders digits
-- as digits but may ignore a '-': the sign is read as a byte, and only texts of one sign and one
-- length are compared as strings.
local MINUS, byte = 45, string.byte  -- '-'

-- -1, 0 or 1 as the epoch text `a` is earlier than, equal to or later than `b`.
local function compare(a, b)
  if a == b then
    return 0
  end
  local negative = byte(a) == MINUS
  if negative ~= (byte(b) == MINUS) then
    return negative and -1 or 1
  end
  local larger = #a > #b  -- in magnitude
  if #a == #b then
    larger = a > b
  end
  if negative then
    larger = not larger
  end
  return larger and 1 or -1
end

-- A version is the text "<epoch>:<digest>" (the digest: 32 hex digits), as the worker sends it and
-- the hash `digest` keeps it per pkey (the version last sent). Whether `value` is one: what earlier
-- builds stored there (a bare digest, 16 or 32 bytes) is not; upgrade.lua rewrites those.
local function is_version(value)
  return #value >= 34 and byte(value, -33) == 58  -- ':'
end

-- The epoch text of a version.
local function epoch_of(version)
  return string.sub(version, 1, #version - 33)
end

-- The dedup rule: a version (epoch, digest) of a pkey is new when none was sent (`last` is false),
-- its epoch is newer than the last one sent, or the epochs are equal and the digests differ. `last`
-- is the stored version (or false); equal versions are one text, so an unchanged row costs no more
-- than that comparison. `epoch` is the version's epoch text when the caller has it. A stored value
-- that is no version (a bare digest an upgrade has not rewritten) says nothing: the row is new,
-- sent rather than lost.
local function is_new(version, last, epoch)
  if not last then
    return true
  end
  if last == version or not is_version(last) then
    return last ~= version
  end
  -- Two versions of one length and sign (their epochs too: a digest is 32 characters) order as their
  -- epochs do wherever the epochs differ, since the epoch comes first: a greater text is a later
  -- epoch, or the same epoch with another digest. Either is new, with no epoch cut out of the texts.
  if #last == #version and byte(last) ~= MINUS and byte(version) ~= MINUS and version > last then
    return true
  end
  -- newer, or the same epoch with another digest (the versions differ)
  return compare(epoch or epoch_of(version), epoch_of(last)) >= 0
end

-- The versions the hash `digests` holds for a batch: `row` is a flat array of `width` texts per row,
-- pkey first. Returns per row the stored version (false: none). Read for 1000 rows per call (HMGET)
-- rather than per row.
local function known(digests, row, width)
  local rows, CHUNK = #row / width, 1000
  local pkeys, stored = {}, {}
  for r = 1, rows do
    pkeys[r] = row[width * (r - 1) + 1]
  end
  for first = 1, rows, CHUNK do
    local last = math.min(first + CHUNK - 1, rows)
    local d = redis.call('HMGET', digests, unpack(pkeys, first, last))
    for r = first, last do
      stored[r] = d[r - first + 1]
    end
  end
  return stored
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
