-- replay.lua: append rows again, whatever `seen` says: no dedup, and nothing written but the stream
-- (not `seen`, `digest`, `keys` nor the watermark). Each message carries replay=<marker>, so consumers
-- can tell it from a change; a row the source marks deleted goes out as op=delete, as a cycle sent it.
-- KEYS[1] stream
-- ARGV[1] variant  ARGV[2] maxlen (0: uncapped)  ARGV[3] replay marker
-- ARGV[4] the rows, as emit.lua takes them but with op ('' or 'delete') for the digest: pkey, epoch
--   (integer microseconds), op, payload per row, in one flat MessagePack array of texts
-- Returns the number of messages appended.
local stream = KEYS[1]
local variant, maxlen, marker = ARGV[1], tonumber(ARGV[2]), ARGV[3]
local row = cmsgpack.unpack(ARGV[4])
local appended = 0
for i = 1, #row, 4 do
  local pkey, epoch, payload = row[i], row[i + 1], row[i + 3]
  if row[i + 2] == 'delete' then
    xadd(stream, maxlen, 'payload', payload, 'variant', variant, 'epoch', epoch, 'pkey', pkey,
      'replay', marker, 'op', 'delete')
  else
    xadd(stream, maxlen, 'payload', payload, 'variant', variant, 'epoch', epoch, 'pkey', pkey,
      'replay', marker)
  end
  appended = appended + 1
end
return appended
