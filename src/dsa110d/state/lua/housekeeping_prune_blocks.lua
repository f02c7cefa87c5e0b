-- KEYS: block index, pending, then one record per id. ARGV: the ids. Deletes each block that
-- is (still) not pending, checked in the same atomic step: a late chunk may have just come.
local gone = 0
for i, id in ipairs(ARGV) do
  if not redis.call('ZSCORE', KEYS[2], id) then
    redis.call('DEL', KEYS[2 + i])
    redis.call('ZREM', KEYS[1], id)
    gone = gone + 1
  end
end
return gone
