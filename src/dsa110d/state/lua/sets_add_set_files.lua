-- KEYS: as _sets_create. ARGV: the _sets_create args (of the first file), then (subband
-- field, path, name time) per file of the same set. One reply per file, as sets_add_file's.
local created = (function()
--#include _sets_create
end)()
--#include _sets_add_one
local replies = {}
for i = 9, #ARGV, 3 do
  replies[#replies + 1] = add(ARGV[i], ARGV[i + 1], ARGV[i + 2], created)
  created = 0
end
return replies
