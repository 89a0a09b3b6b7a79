"""The scripts that look after queues as a whole: prune and count finished tasks, prune
schedule ticks, per-queue stats, pause and resume, retry the failed.
"""

from __future__ import annotations

# ARGV: prefix, backend, finished before (epoch us), batch size, statuses...
# Deletes up to a batch per queue and status; returns {deleted, index entries examined}.
PRUNE = """
local backend, before, batch = ARGV[2], '(' .. ARGV[3], tonumber(ARGV[4])
local deleted, seen = 0, 0
for _, queue in ipairs(redis.call('SMEMBERS', key(backend, 'queues'))) do
  for s = 5, #ARGV do
    local status = ARGV[s]
    local done = key(backend, string.lower(status), queue)
    local ids = redis.call('ZRANGEBYSCORE', done, '-inf', before, 'LIMIT', 0, batch)
    for _, id in ipairs(ids) do
      local t_key = task_key(id)
      if redis.call('HGET', t_key, 'status') == status then
        redis.call('DEL', t_key, P .. ':parents:' .. id, P .. ':children:' .. id)
        deleted = deleted + 1
      end
      redis.call('ZREM', done, id)
      seen = seen + 1
    end
  end
end
return {deleted, seen}
"""

# ARGV: prefix, backend, finished before (epoch us), TTL trim bound (epoch us, '' for none),
# statuses... Returns how many finished tasks PRUNE would delete (expired ones are not counted).
COUNT_FINISHED = """
local backend, before, trim = ARGV[2], '(' .. ARGV[3], ARGV[4]
local count = 0
for _, queue in ipairs(redis.call('SMEMBERS', key(backend, 'queues'))) do
  for s = 5, #ARGV do
    local done = key(backend, string.lower(ARGV[s]), queue)
    if trim ~= '' then redis.call('ZREMRANGEBYSCORE', done, '-inf', '(' .. trim) end
    count = count + redis.call('ZCOUNT', done, '-inf', before)
  end
end
return count
"""

# ARGV: prefix, backend, schedule name, bound (epoch us). Deletes the ticks scored below the
# bound, except the newest. Returns how many were deleted.
PRUNE_TICKS = """
local ticks = key(ARGV[2], 'ticks', ARGV[3])
local newest = redis.call('ZRANGE', ticks, -1, -1, 'WITHSCORES')
if #newest == 0 then return 0 end
local bound = math.min(tonumber(ARGV[4]), tonumber(newest[2]))
return redis.call('ZREMRANGEBYSCORE', ticks, '-inf', '(' .. string.format('%.0f', bound))
"""

# ARGV: prefix, backend, TTL trim bound (epoch us, '' for none). Returns per queue: {queue,
# ready, running, failed, successful, oldest available_at among READY (stamp or '')}.
STATS = """
local backend, trim = ARGV[2], ARGV[3]
local out = {}
for _, queue in ipairs(redis.call('SMEMBERS', key(backend, 'queues'))) do
  local ready, delayed = key(backend, 'ready', queue), key(backend, 'delayed', queue)
  local successful, failed = key(backend, 'successful', queue), key(backend, 'failed', queue)
  if trim ~= '' then
    redis.call('ZREMRANGEBYSCORE', successful, '-inf', '(' .. trim)
    redis.call('ZREMRANGEBYSCORE', failed, '-inf', '(' .. trim)
  end
  -- The oldest READY task: the delayed set's first, or the first of a priority in the ready set.
  local oldest = ''
  local first = redis.call('ZRANGE', delayed, 0, 0)
  if first[1] then oldest = string.sub(first[1], 1, 18) end
  local floor = '-inf'
  while true do
    local head = redis.call('ZRANGEBYSCORE', ready, floor, '+inf', 'WITHSCORES', 'LIMIT', 0, 1)
    if not head[1] then break end
    local available = string.sub(head[1], 1, 18)
    if oldest == '' or available < oldest then oldest = available end
    floor = '(' .. head[2]
  end
  out[#out + 1] = {queue, redis.call('ZCARD', ready) + redis.call('ZCARD', delayed),
    redis.call('ZCARD', key(backend, 'running', queue)), redis.call('ZCARD', failed),
    redis.call('ZCARD', successful), oldest}
end
return out
"""

# ARGV: prefix, backend, now (iso), queue names... Returns the queues that were not paused yet.
PAUSE = """
local paused, fresh = key(ARGV[2], 'paused'), {}
for q = 4, #ARGV do
  if redis.call('HSETNX', paused, ARGV[q], ARGV[3]) == 1 then fresh[#fresh + 1] = ARGV[q] end
end
return fresh
"""

# ARGV: prefix, backend, queue names... Returns the queues that were paused (and wakes them).
RESUME = """
local backend = ARGV[2]
local paused, resumed = key(backend, 'paused'), {}
for q = 3, #ARGV do
  if redis.call('HDEL', paused, ARGV[q]) == 1 then
    resumed[#resumed + 1] = ARGV[q]
    wake(backend, ARGV[q])
  end
end
publish_wakes()
return resumed
"""

# ARGV: prefix, backend, now (iso), now (stamp), then per task: id, new max_attempts. FAILED
# tasks of the backend go back to READY (available now; errors and worker ids kept, no TTL).
# Returns the ids moved.
RETRY_FAILED = """
local backend, now_iso, now = ARGV[2], ARGV[3], ARGV[4]
local moved = {}
for i = 5, #ARGV, 2 do
  local id = ARGV[i]
  local t_key = task_key(id)
  local t = redis.call('HMGET', t_key, 'status', 'backend', 'queue_name', 'rank', 'priority')
  if t[1] == 'FAILED' and t[2] == backend then
    local rank = now .. ':' .. string.sub(t[4], 20, 37) .. ':' .. id
    redis.call('ZREM', key(backend, 'failed', t[3]), id)
    redis.call('PERSIST', t_key)
    redis.call('HSET', t_key, 'status', 'READY', 'max_attempts', ARGV[i + 1],
      'available_at', now_iso, 'rank', rank, 'finished_at', '', 'worker_id', '',
      'lease_expires_at', '', 'cancel_requested_at', '')
    make_ready(backend, t[3], rank, t[5], now)
    moved[#moved + 1] = id
  end
end
publish_wakes()
return moved
"""
