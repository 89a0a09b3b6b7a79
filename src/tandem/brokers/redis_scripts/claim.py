"""The scripts that hand out work and keep it: claim (by priority, or the starved oldest-first),
whether anything is claimable, and lease renewal.
"""

from __future__ import annotations

# ARGV: prefix, backend, limit, worker id, worker id as JSON, lease (iso, or '' on the store's
# clock), lease (epoch us, or its length in us on the store's clock), now (iso), now (stamp),
# attempt token, result TTL (ms), TTL trim bound (epoch us), now (epoch us), the pool's rate
# ('' for none) and its limit key, queue names... Returns the claimed tasks (HGETALL each, as
# one JSON array), in order.
CLAIM = """
local backend, limit, worker = ARGV[2], tonumber(ARGV[3]), ARGV[4]
local now_iso, now, token = ARGV[8], ARGV[9], ARGV[10]
flow = {ttl = ARGV[11], trim = ARGV[12], score = ARGV[13], now = now}
local lease_iso, lease_score = lease_of(ARGV[6], ARGV[7])
flow_rates(ARGV[6], ARGV[13], ARGV[14], ARGV[15])
if flow.pool_rate then
  limit = math.min(limit, rate_room(backend, flow.pool_key, flow.pool_rate))
  if limit <= 0 then return {} end
end
local due_bound = '(' .. now .. ';'  -- ':' < ';': every rank whose stamp is <= now
local candidates = {}
for _, queue in ipairs(unpaused(backend, 16)) do
  local ready, delayed = key(backend, 'ready', queue), key(backend, 'delayed', queue)
  local due = redis.call('ZRANGEBYLEX', delayed, '-', due_bound)
  if #due > 0 then
    for _, rank in ipairs(due) do
      local priority = redis.call('HGET', task_key(id_of(rank)), 'priority')
      if priority then redis.call('ZADD', ready, 0 - tonumber(priority), rank) end
    end
    redis.call('ZREMRANGEBYLEX', delayed, '-', due_bound)
  end
  -- This queue's best `limit`, skipping ranks ahead of this claimer's clock.
  local found, offset = 0, 0
  while found < limit do
    local page = redis.call('ZRANGE', ready, offset, offset + limit - 1, 'WITHSCORES')
    if #page == 0 then break end
    for j = 1, #page, 2 do
      if string.sub(page[j], 1, 18) <= now and not blocked(backend, id_of(page[j])) then
        candidates[#candidates + 1] = {tonumber(page[j + 1]), page[j], queue}
        found = found + 1
        if found == limit then break end
      end
    end
    offset = offset + limit
  end
end
table.sort(candidates, claim_order)
local claimed = {}
for n = 1, math.min(limit, #candidates) do
  local rank, queue = candidates[n][2], candidates[n][3]
  claimed[#claimed + 1] = take(backend, queue, rank, worker, token, lease_iso, lease_score,
    now_iso, ARGV[5])
end
publish_wakes()
return claimed
"""

# ARGV: prefix, backend, now (stamp), queue names... Returns 1 when a task is claimable.
HAS_READY = """
local backend, now = ARGV[2], ARGV[3]
for _, queue in ipairs(unpaused(backend, 4)) do
  local due = redis.call('ZRANGEBYLEX', key(backend, 'delayed', queue), '-', '(' .. now .. ';',
    'LIMIT', 0, 1)
  if #due > 0 then return 1 end
  local offset = 0
  while true do
    local page = redis.call('ZRANGE', key(backend, 'ready', queue), offset, offset + 99)
    if #page == 0 then break end
    for _, rank in ipairs(page) do
      if string.sub(rank, 1, 18) <= now and not blocked(backend, id_of(rank)) then return 1 end
    end
    offset = offset + 100
  end
end
return 0
"""

# ARGV: as CLAIM's up to the attempt token, then the starvation bound (stamp) as ARGV[11], the
# result TTL, TTL trim bound and now (epoch us) as ARGV[12 .. 14], the pool's rate and limit key
# as ARGV[15 .. 16] and the queue names from ARGV[17]. Claims READY tasks available at or before
# the bound, oldest first whatever their priority: per queue, per priority, the head of the ready
# set while it is old enough.
CLAIM_STARVED = """
local backend, limit, worker = ARGV[2], tonumber(ARGV[3]), ARGV[4]
local now_iso, now, token, bound = ARGV[8], ARGV[9], ARGV[10], ARGV[11]
flow = {ttl = ARGV[12], trim = ARGV[13], score = ARGV[14], now = now}
local lease_iso, lease_score = lease_of(ARGV[6], ARGV[7])
flow_rates(ARGV[6], ARGV[14], ARGV[15], ARGV[16])
if flow.pool_rate then
  limit = math.min(limit, rate_room(backend, flow.pool_key, flow.pool_rate))
  if limit <= 0 then return {} end
end
local due_bound = '(' .. now .. ';'
local candidates = {}
for _, queue in ipairs(unpaused(backend, 17)) do
  local ready, delayed = key(backend, 'ready', queue), key(backend, 'delayed', queue)
  local due = redis.call('ZRANGEBYLEX', delayed, '-', due_bound)
  if #due > 0 then
    for _, rank in ipairs(due) do
      local priority = redis.call('HGET', task_key(id_of(rank)), 'priority')
      if priority then redis.call('ZADD', ready, 0 - tonumber(priority), rank) end
    end
    redis.call('ZREMRANGEBYLEX', delayed, '-', due_bound)
  end
  local floor = '-inf'
  while true do
    local head = redis.call('ZRANGEBYSCORE', ready, floor, '+inf', 'WITHSCORES', 'LIMIT', 0, 1)
    if not head[1] then break end
    local found, offset = 0, 0
    while found < limit do
      local page = redis.call('ZRANGEBYSCORE', ready, head[2], head[2], 'LIMIT', offset, limit)
      if #page == 0 then break end
      local older = false
      for _, rank in ipairs(page) do
        if string.sub(rank, 1, 18) > bound then break end
        older = true
        if not blocked(backend, id_of(rank)) then
          candidates[#candidates + 1] = {rank, queue}
          found = found + 1
          if found == limit then break end
        end
      end
      if not older or #page < limit then break end
      offset = offset + limit
    end
    floor = '(' .. head[2]
  end
end
-- Oldest first: ranks start with '<available stamp>:<enqueued stamp>'.
table.sort(candidates, function(a, b) return a[1] < b[1] end)
local claimed = {}
for n = 1, math.min(limit, #candidates) do
  local rank, queue = candidates[n][1], candidates[n][2]
  claimed[#claimed + 1] = take(backend, queue, rank, worker, token, lease_iso, lease_score,
    now_iso, ARGV[5])
end
publish_wakes()
return claimed
"""

# ARGV: prefix, worker id, lease (iso, or '' on the store's clock), lease (epoch us, or its
# length in us), then per attempt: task id, attempt token. Returns the ids still held.
RENEW = """
local worker, held = ARGV[2], {}
local lease_iso, lease_score = lease_of(ARGV[3], ARGV[4])
for i = 5, #ARGV, 2 do
  local id = ARGV[i]
  local t_key = task_key(id)
  local t = redis.call('HMGET', t_key, 'status', 'worker_id', 'backend', 'queue_name',
    'attempt_token')
  if t[1] == 'RUNNING' and t[2] == worker and t[5] == ARGV[i + 1] then
    redis.call('HSET', t_key, 'lease_expires_at', lease_iso)
    redis.call('ZADD', key(t[3], 'running', t[4]), lease_score, id)
    held[#held + 1] = id
  end
end
return held
"""
