-- KEYS: record, active, index, stream. ARGV: fp, now, hold, repeat, rule, severity, summary,
-- details, host, maxlen. Returns the event sent ('fire', 'repeat') or ''.
local st = redis.call('HGET', KEYS[1], 'status')
local now = tonumber(ARGV[2])
if (not st) or st == 'resolved' or st == 'notice' then
  redis.call('DEL', KEYS[1])
  redis.call('HSET', KEYS[1], 'fingerprint', ARGV[1], 'status', 'pending', 'since', ARGV[2],
             'sent', 0)
  redis.call('SADD', KEYS[2], ARGV[1])
  st = 'pending'
end
redis.call('HSET', KEYS[1], 'seen_at', ARGV[2], 'rule', ARGV[5], 'severity', ARGV[6],
           'summary', ARGV[7], 'details', ARGV[8])
local event = ''
if st == 'pending' then
  if now - tonumber(redis.call('HGET', KEYS[1], 'since')) >= tonumber(ARGV[3]) then
    redis.call('HSET', KEYS[1], 'status', 'firing', 'fired_at', ARGV[2], 'last_sent', ARGV[2])
    event = 'fire'
  end
elseif st == 'firing' then
  local repeat_sec = tonumber(ARGV[4])
  local last = tonumber(redis.call('HGET', KEYS[1], 'last_sent'))
  if repeat_sec > 0 and now - last >= repeat_sec then
    redis.call('HSET', KEYS[1], 'last_sent', ARGV[2])
    event = 'repeat'
  end
end
if event ~= '' then
  redis.call('HINCRBY', KEYS[1], 'sent', 1)
  redis.call('ZADD', KEYS[3], now, ARGV[1])
  redis.call('XADD', KEYS[4], 'MAXLEN', '~', ARGV[10], '*', 'fingerprint', ARGV[1],
             'event', event, 'rule', ARGV[5], 'severity', ARGV[6], 'summary', ARGV[7],
             'details', ARGV[8], 'since', redis.call('HGET', KEYS[1], 'since'), 'at', ARGV[2],
             'host', ARGV[9])
elseif st == 'pending' then
  redis.call('ZADD', KEYS[3], now, ARGV[1])
end
return event
