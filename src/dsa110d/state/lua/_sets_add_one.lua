-- Part: add(sb, path, t, created) adds one file (subband field ``sb``, ``path``, name time
-- ``t``) to the record KEYS[1] (made by _sets_create; ``created`` says whether it was).
-- ARGV: the _sets_create args.
local function add(sb, path, t, created)
  local state = redis.call('HGET', KEYS[1], 'state')
  local n = tonumber(redis.call('HGET', KEYS[1], 'n_subbands'))
  redis.call('HSET', KEYS[1], 'last_seen', ARGV[7])
  local have = redis.call('HGET', KEYS[1], sb)
  if have == path then return {'known', state, n, created, have} end
  if have then return {'duplicate', state, n, created, have} end
  if state ~= 'collecting' and state ~= 'complete' and state ~= 'incomplete' then
    return {'late', state, n, created, ''}
  end
  redis.call('HSET', KEYS[1], sb, path)
  n = redis.call('HINCRBY', KEYS[1], 'n_subbands', 1)
  if tonumber(t) < tonumber(redis.call('HGET', KEYS[1], 'name_time')) then
    redis.call('HSET', KEYS[1], 'name_time', t)
    redis.call('ZADD', KEYS[4], t, ARGV[1])
  end
  if n >= tonumber(ARGV[8]) and state ~= 'complete' then
    state = 'complete'
    redis.call('HSET', KEYS[1], 'state', state)
    redis.call('ZADD', KEYS[3], 'NX', ARGV[7], ARGV[1])
  end
  return {'added', state, n, created, ''}
end
