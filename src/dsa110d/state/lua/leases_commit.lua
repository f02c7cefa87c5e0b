-- KEYS[1] fence counter, KEYS[2] committed token; ARGV[1] token.
-- Returns {1, token} on success, {0, newer token} when superseded.
local token = tonumber(ARGV[1])
local newest = tonumber(redis.call('GET', KEYS[1]) or '0')
if token ~= newest then return {0, newest} end
local done = tonumber(redis.call('GET', KEYS[2]) or '0')
if token < done then return {0, done} end
redis.call('SET', KEYS[2], token)
return {1, token}
