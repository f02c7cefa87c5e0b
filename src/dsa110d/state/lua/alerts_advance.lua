-- KEYS: mark. ARGV: value. Moves the mark to value; returns the previous value when the value
-- grew (-1 when there was none), else nil. Several daemons: only one sees each increase.
local old = redis.call('GET', KEYS[1])
redis.call('SET', KEYS[1], ARGV[1])
if not old then return -1 end
if tonumber(ARGV[1]) > tonumber(old) then return tonumber(old) end
return false
