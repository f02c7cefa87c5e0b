-- KEYS: solution hash, index of its kind, counts hash, block hash (kind -> newest id),
-- the previous solution's hash (the block's newest of that kind; the solution's own key
-- when there is none). ARGV: solution id, kind, status, valid from (MJD), block version,
-- previous id ('' when none), then the solution's field/value pairs.
-- Queued inside the block's fenced transaction. Registers a solution once: an id already
-- registered by the same or a later run of its block changes nothing (returns 0); one
-- registered by an earlier run is replaced (the re-run solved it again under the same id).
-- A solution from a newer run of the same block supersedes the older one of its kind.
local existing = redis.call('HMGET', KEYS[1], 'status', 'block_version', 'superseded_by')
if existing[1] then
  if tonumber(existing[2] or '0') >= tonumber(ARGV[5]) then
    return 0
  end
  local was = existing[1]
  if existing[3] and existing[3] ~= '' then
    was = 'superseded'
  end
  redis.call('HINCRBY', KEYS[3], ARGV[2] .. ':' .. was, -1)
  redis.call('DEL', KEYS[1])
end
local fields = {}
for i = 7, #ARGV do
  fields[#fields + 1] = ARGV[i]
end
redis.call('HSET', KEYS[1], unpack(fields))
redis.call('ZADD', KEYS[2], ARGV[4], ARGV[1])
redis.call('HINCRBY', KEYS[3], ARGV[2] .. ':' .. ARGV[3], 1)
local previous = ARGV[6]
if previous ~= '' and previous ~= ARGV[1] then
  local old = redis.call('HMGET', KEYS[5], 'status', 'superseded_by', 'block_version')
  if old[1] and (not old[2] or old[2] == '')
      and tonumber(old[3] or '0') < tonumber(ARGV[5]) then
    redis.call('HSET', KEYS[5], 'superseded_by', ARGV[1])
    redis.call('HINCRBY', KEYS[3], ARGV[2] .. ':' .. old[1], -1)
    redis.call('HINCRBY', KEYS[3], ARGV[2] .. ':superseded', 1)
  end
end
redis.call('HSET', KEYS[4], ARGV[2], ARGV[1])
return 1
