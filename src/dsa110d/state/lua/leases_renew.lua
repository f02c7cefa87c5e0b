-- KEYS[1] lease; ARGV[1] "token owner", ARGV[2] ttl ms. 1 if renewed, 0 if not ours.
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
