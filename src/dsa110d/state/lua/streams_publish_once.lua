-- KEYS[1] stream, KEYS[2] dedup marker; ARGV[1] envelope, ARGV[2] marker TTL (ms).
if redis.call('EXISTS', KEYS[2]) == 1 then return false end
local id = redis.call('XADD', KEYS[1], '*', 'm', ARGV[1])
redis.call('SET', KEYS[2], id, 'PX', ARGV[2])
return id
