-- KEYS: record, open. ARGV: partial flag, now, the states a set may be claimed from (comma
-- separated), the state it is claimed into. The claimed record for the one winner, else false.
local s = redis.call('HGET', KEYS[1], 'state')
if not s or not string.find(',' .. ARGV[3] .. ',', ',' .. s .. ',', 1, true) then
  return false
end
redis.call('HSET', KEYS[1], 'state', ARGV[4], 'partial', ARGV[1], 'queued_at', ARGV[2])
return redis.call('HGETALL', KEYS[1])
