-- KEYS: block index, pending, then per id its record, lease, fence counter and commit mark.
-- ARGV: the ids. Deletes each block that is (still) not pending and whose lease nobody holds,
-- checked in the same atomic step: a late chunk may have just come, a run may have started.
-- The fencing keys go with the record: left behind, they would pile up for ever.
local gone = 0
for i, id in ipairs(ARGV) do
  local k = 2 + (i - 1) * 4
  if not redis.call('ZSCORE', KEYS[2], id) and redis.call('EXISTS', KEYS[k + 2]) == 0 then
    redis.call('DEL', KEYS[k + 1], KEYS[k + 3], KEYS[k + 4])
    redis.call('ZREM', KEYS[1], id)
    gone = gone + 1
  end
end
return gone
