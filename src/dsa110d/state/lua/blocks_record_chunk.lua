-- KEYS: chunk record, chunk index, block index, pending, then one block record per block.
-- ARGV: chunk id, set id, start, end, dec, path, now, then (block id, start, end) per block.
-- 0 when the chunk was already recorded with this path (nothing changes), else 1.
if redis.call('HGET', KEYS[1], 'path') == ARGV[6] then return 0 end
redis.call('HSET', KEYS[1], 'set_id', ARGV[2], 'start', ARGV[3], 'end', ARGV[4],
  'dec', ARGV[5], 'path', ARGV[6], 'recorded_at', ARGV[7])
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1])
for i = 5, #KEYS do
  local j = 8 + (i - 5) * 3
  local id, s, e = ARGV[j], ARGV[j + 1], ARGV[j + 2]
  if redis.call('EXISTS', KEYS[i]) == 0 then
    redis.call('HSET', KEYS[i], 'block_id', id, 'start', s, 'end', e, 'state', 'pending',
      'version', 0, 'generation', 0, 'done_generation', 0, 'attempts', 0,
      'created_at', ARGV[7])
  end
  redis.call('HINCRBY', KEYS[i], 'generation', 1)
  if redis.call('HGET', KEYS[i], 'state') == 'failed' then
    redis.call('HSET', KEYS[i], 'state', 'pending', 'attempts', 0)
  end
  redis.call('ZADD', KEYS[3], s, id)
  redis.call('ZADD', KEYS[4], e, id)
end
return 1
