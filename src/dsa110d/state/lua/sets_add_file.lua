-- KEYS: as _sets_create. ARGV: the _sets_create args, then subband field, path. One file.
local created = (function()
--#include _sets_create
end)()
--#include _sets_add_one
return add(ARGV[9], ARGV[10], ARGV[6], created)
