-- KEYS[1] lease, KEYS[2] its newest token, KEYS[3] the namespace's token counter;
-- ARGV[1] owner, ARGV[2] ttl ms. Returns token or nil. (A per-lease counter written by an
-- older version may be ahead of the shared one: the shared one then jumps past it.)
if redis.call('EXISTS', KEYS[1]) == 1 then return false end
local newest = tonumber(redis.call('GET', KEYS[2]) or '0')
local token = redis.call('INCR', KEYS[3])
if token <= newest then
  token = newest + 1
  redis.call('SET', KEYS[3], token)
end
redis.call('SET', KEYS[2], token)
redis.call('SET', KEYS[1], token .. ' ' .. ARGV[1], 'PX', ARGV[2])
return token
