-- KEYS[1] stream, KEYS[2..] owners' heartbeat keys; ARGV[1] group, ARGV[2] claimant,
-- then triples (entry id, owner, index into KEYS of the owner's heartbeat). Claims an entry
-- only if it is still pending under that owner and the owner's heartbeat is gone.
-- Returns a flat list: id, delivery count, id, delivery count, ...
local claimed = {}
for i = 3, #ARGV, 3 do
  local id = ARGV[i]
  if redis.call('EXISTS', KEYS[tonumber(ARGV[i + 2])]) == 0 then
    local p = redis.call('XPENDING', KEYS[1], ARGV[1], id, id, 1)
    if #p == 1 and p[1][2] == ARGV[i + 1] then
      local got = redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, id, 'JUSTID')
      if #got == 1 then
        table.insert(claimed, id)
        table.insert(claimed, p[1][4] + 1)
      end
    end
  end
end
return claimed
