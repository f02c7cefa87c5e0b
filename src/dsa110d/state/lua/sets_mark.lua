-- KEYS: record, open, moves. ARGV: new state, allowed-from (comma separated), now, error
-- JSON or '', 1 to count an attempt, how many converted set ids the moves list keeps, the
-- converted state. Takes the set off the open list. Returns the previous state, or false
-- when the set is missing or the move not allowed.
local s = redis.call('HGET', KEYS[1], 'state')
if not s then return false end
if not string.find(',' .. ARGV[2] .. ',', ',' .. s .. ',', 1, true) then return false end
redis.call('HSET', KEYS[1], 'state', ARGV[1], 'last_seen', ARGV[3])
if ARGV[4] ~= '' then
  local n = redis.call('HINCRBY', KEYS[1], 'n_errors', 1)
  redis.call('HSET', KEYS[1], string.format('err:%05d', n), ARGV[4])
end
if ARGV[5] == '1' then redis.call('HINCRBY', KEYS[1], 'attempts', 1) end
redis.call('ZREM', KEYS[2], redis.call('HGET', KEYS[1], 'set_id'))
if ARGV[1] == ARGV[7] then
  redis.call('RPUSH', KEYS[3], redis.call('HGET', KEYS[1], 'set_id'))
  redis.call('LTRIM', KEYS[3], -tonumber(ARGV[6]), -1)
end
return s
