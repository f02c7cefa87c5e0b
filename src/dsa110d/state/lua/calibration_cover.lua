-- KEYS: coverage hash. ARGV: first MJD, last MJD of a block a calibrate stage ran on.
-- Widens the span of data the calibration has seen (queued in the block's fenced commit).
local first = tonumber(redis.call('HGET', KEYS[1], 'first_mjd') or '')
local last = tonumber(redis.call('HGET', KEYS[1], 'last_mjd') or '')
if first == nil or tonumber(ARGV[1]) < first then
  redis.call('HSET', KEYS[1], 'first_mjd', ARGV[1])
end
if last == nil or tonumber(ARGV[2]) > last then
  redis.call('HSET', KEYS[1], 'last_mjd', ARGV[2])
end
return 1
