-- KEYS: record, active, index, stream. ARGV: fp, now, stale, host, maxlen.
-- Returns 'resolve' (it was firing), 'dropped' (it never fired) or ''.
local st = redis.call('HGET', KEYS[1], 'status')
local now = tonumber(ARGV[2])
if st ~= 'pending' and st ~= 'firing' then
  redis.call('SREM', KEYS[2], ARGV[1])
  return ''
end
if now - tonumber(redis.call('HGET', KEYS[1], 'seen_at')) < tonumber(ARGV[3]) then return '' end
redis.call('SREM', KEYS[2], ARGV[1])
if st == 'pending' then
  redis.call('DEL', KEYS[1])
  redis.call('ZREM', KEYS[3], ARGV[1])
  return 'dropped'
end
redis.call('HSET', KEYS[1], 'status', 'resolved', 'resolved_at', ARGV[2])
redis.call('ZADD', KEYS[3], now, ARGV[1])
local r = redis.call('HMGET', KEYS[1], 'rule', 'severity', 'summary', 'details', 'since')
redis.call('XADD', KEYS[4], 'MAXLEN', '~', ARGV[5], '*', 'fingerprint', ARGV[1],
           'event', 'resolve', 'rule', r[1], 'severity', r[2], 'summary', r[3],
           'details', r[4], 'since', r[5], 'at', ARGV[2], 'host', ARGV[4])
return 'resolve'
