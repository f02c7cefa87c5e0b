-- KEYS: the pending registrations hash. ARGV: block id, the candidates path registered.
-- Removes the block's pending registration only if it still names that path: a newer run of
-- the block (a newer path) committed meanwhile keeps its own.
if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then
  return redis.call('HDEL', KEYS[1], ARGV[1])
end
return 0
