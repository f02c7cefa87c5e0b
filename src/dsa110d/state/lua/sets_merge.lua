-- KEYS: from record, into record, index, open, name times. ARGV: from id. Moves the errors of
-- a set known only by file names into a timed set; 1 if merged.
if redis.call('EXISTS', KEYS[1]) == 0 or redis.call('EXISTS', KEYS[2]) == 0 then return 0 end
if redis.call('HGET', KEYS[1], 'time0') ~= '' then return 0 end
local all = redis.call('HGETALL', KEYS[1])
for i = 1, #all, 2 do
  local f, v = all[i], all[i + 1]
  if string.sub(f, 1, 4) == 'err:' then
    local n = redis.call('HINCRBY', KEYS[2], 'n_errors', 1)
    redis.call('HSET', KEYS[2], string.format('err:%05d', n), v)
  elseif string.sub(f, 1, 5) == 'seen:' then
    redis.call('HSETNX', KEYS[2], f, v)
  end
end
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[3], ARGV[1])
redis.call('ZREM', KEYS[4], ARGV[1])
redis.call('ZREM', KEYS[5], ARGV[1])
return 1
