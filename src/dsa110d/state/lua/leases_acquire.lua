-- KEYS[1] lease, KEYS[2] fence counter; ARGV[1] owner, ARGV[2] ttl ms. Returns token or nil.
if redis.call('EXISTS', KEYS[1]) == 1 then return false end
local token = redis.call('INCR', KEYS[2])
redis.call('SET', KEYS[1], token .. ' ' .. ARGV[1], 'PX', ARGV[2])
return token
