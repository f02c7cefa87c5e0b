-- Part: the body of a function that creates a set record if missing (1 if it did, else 0).
-- KEYS: record, index, open, name times. ARGV: set_id, state, time0, integration, dec,
-- name_time, now, expected.
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'set_id', ARGV[1], 'state', ARGV[2], 'time0', ARGV[3],
  'integration', ARGV[4], 'dec', ARGV[5], 'name_time', ARGV[6], 'first_seen', ARGV[7],
  'last_seen', ARGV[7], 'attempts', 0, 'n_errors', 0, 'n_subbands', 0, 'expected', ARGV[8],
  'partial', 0)
redis.call('ZADD', KEYS[2], ARGV[7], ARGV[1])
redis.call('ZADD', KEYS[3], ARGV[7], ARGV[1])
redis.call('ZADD', KEYS[4], ARGV[6], ARGV[1])
return 1
