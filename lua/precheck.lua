#!lua flags=no-writes
-- precheck.lua: which rows of a batch may be new, read only: the worker's precheck of a mostly
-- unchanged window, by lib.lua's is_new against the versions the hash `digest` holds (lib.lua's
-- known), so the rule stands once and the reply is only the rows left (none, for an unchanged
-- window). emit.lua still judges what is then sent.
-- KEYS[1] digest (hash pkey -> version)
-- ARGV[1] the rows: one flat MessagePack array of two texts per row: pkey, version ("<epoch>:<digest>")
--   (core/rows.py's pack_versions)
-- Returns the 0-based positions of the rows that may be new, increasing.
local row = cmsgpack.unpack(ARGV[1])
local stored = known(KEYS[1], row, 2)
local fresh = {}
for r = 1, #row / 2 do
  if is_new(row[2 * r], stored[r]) then
    fresh[#fresh + 1] = r - 1
  end
end
return fresh
