-- KEYS: the monitored hash, the pending blocks, then one block record per block to re-run.
-- ARGV: candidate id, its JSON record, then the block ids (in KEYS' order).
-- 1 when this call registered the candidate (and asked for the re-runs), 0 when it was
-- already monitored: the first caller alone re-runs the earlier blocks, however many
-- processors saw the same candidate. Each re-run block's monitor_generation is set to its new
-- generation: while no chunk bumps it further, the re-run is for photometry alone.
if redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2]) == 0 then return 0 end
for i = 3, #KEYS do
  local id = ARGV[i]
  if redis.call('EXISTS', KEYS[i]) == 1 then
    local generation = redis.call('HINCRBY', KEYS[i], 'generation', 1)
    redis.call('HSET', KEYS[i], 'monitor_generation', generation)
    if redis.call('HGET', KEYS[i], 'state') == 'failed' then
      redis.call('HSET', KEYS[i], 'state', 'pending', 'attempts', 0)
    end
    redis.call('ZADD', KEYS[2], redis.call('HGET', KEYS[i], 'end'), id)
  end
end
return 1
