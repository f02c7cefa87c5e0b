-- KEYS: as _sets_create. ARGV: the _sets_create args, then seen tag ('' = always record),
-- error JSON. Returns 1 if recorded, 0 if this fault of this file was recorded before.
local created = (function()
--#include _sets_create
end)()
if ARGV[9] ~= '' and redis.call('HSETNX', KEYS[1], ARGV[9], '1') == 0 then return 0 end
local n = redis.call('HINCRBY', KEYS[1], 'n_errors', 1)
redis.call('HSET', KEYS[1], string.format('err:%05d', n), ARGV[10], 'last_seen', ARGV[7])
return 1
