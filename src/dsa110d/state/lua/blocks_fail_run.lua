-- KEYS: block record, pending. ARGV: block id, error, max attempts, now.
-- Returns the attempts so far; at max attempts the block is failed and off the pending list.
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local n = redis.call('HINCRBY', KEYS[1], 'attempts', 1)
redis.call('HSET', KEYS[1], 'error', ARGV[2], 'failed_at', ARGV[4])
if n >= tonumber(ARGV[3]) then
  redis.call('HSET', KEYS[1], 'state', 'failed')
  redis.call('ZREM', KEYS[2], ARGV[1])
end
return n
