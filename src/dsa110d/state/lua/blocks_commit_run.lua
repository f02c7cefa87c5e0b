-- KEYS: block record, pending. ARGV: block id, version, generation seen, chunks JSON,
-- missing JSON, results JSON, now, QA JSON. Queued inside the fenced transaction.
redis.call('HSET', KEYS[1], 'state', 'processed', 'version', ARGV[2],
  'done_generation', ARGV[3], 'chunks', ARGV[4], 'missing', ARGV[5], 'results', ARGV[6],
  'processed_at', ARGV[7], 'attempts', 0, 'error', '', 'qa', ARGV[8])
if tonumber(redis.call('HGET', KEYS[1], 'generation') or '0') <= tonumber(ARGV[3]) then
  redis.call('ZREM', KEYS[2], ARGV[1])
end
return tonumber(ARGV[2])
