-- KEYS[1] pending, KEYS[2] times, KEYS[3] full, KEYS[4] last run;
-- ARGV[1] now, ARGV[2] last-run JSON, ARGV[3] "1" if the run took the full request,
-- ARGV[4..] block ids the run took.
for i = 4, #ARGV do redis.call('SREM', KEYS[1], ARGV[i]) end
if ARGV[3] == '1' then redis.call('DEL', KEYS[3]) end
if redis.call('SCARD', KEYS[1]) == 0 and redis.call('EXISTS', KEYS[3]) == 0 then
  redis.call('DEL', KEYS[2])
else
  redis.call('HSET', KEYS[2], 'first', ARGV[1])
end
redis.call('SET', KEYS[4], ARGV[2])
return redis.call('SCARD', KEYS[1])
