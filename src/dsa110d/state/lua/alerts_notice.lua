-- KEYS: record, index, stream. ARGV: fp, now, rule, severity, summary, details, host, maxlen.
-- A one-shot event: 'notice' the first time this fingerprint is seen, else ''.
if redis.call('EXISTS', KEYS[1]) == 1 then return '' end
redis.call('HSET', KEYS[1], 'fingerprint', ARGV[1], 'status', 'notice', 'since', ARGV[2],
           'seen_at', ARGV[2], 'fired_at', ARGV[2], 'last_sent', ARGV[2], 'sent', 1,
           'rule', ARGV[3], 'severity', ARGV[4], 'summary', ARGV[5], 'details', ARGV[6])
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[8], '*', 'fingerprint', ARGV[1],
           'event', 'notice', 'rule', ARGV[3], 'severity', ARGV[4], 'summary', ARGV[5],
           'details', ARGV[6], 'since', ARGV[2], 'at', ARGV[2], 'host', ARGV[7])
return 'notice'
