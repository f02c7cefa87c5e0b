-- KEYS[1] dead-letter stream, KEYS[2] stream; ARGV[1] dead-letter id. Moves one letter back.
local e = redis.call('XRANGE', KEYS[1], ARGV[1], ARGV[1])
if #e == 0 then return false end
local fields = e[1][2]
local raw = nil
for i = 1, #fields, 2 do
  if fields[i] == 'raw' then raw = fields[i + 1] end
end
if raw == nil then return false end
local id = redis.call('XADD', KEYS[2], '*', 'm', raw)
redis.call('XDEL', KEYS[1], ARGV[1])
return id
