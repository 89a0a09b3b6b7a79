"""The scripts that store new tasks: push, a workflow (chain or group) at once, and a schedule
tick's task.
"""

from __future__ import annotations

# ARGV: prefix, then one value per task: its fields (redis_codec.pack, task_fields). Returns
# the id each task is known by.
PUSH = """
local ids = {}
for i = 2, #ARGV do ids[#ids + 1] = push_one(task_fields(ARGV[i])) end
publish_wakes()
return ids
"""

# ARGV: prefix, now (iso), now (stamp), now (epoch us), result TTL (ms), TTL trim bound, task
# count, one value per task (its fields: redis_codec.pack), dependency count, then per
# dependency: task id, on_parent_failure, pass_result ('1'/'0'), parent count, parent ids...;
# then group id ('' for none), and for a group: backend, created_at (epoch us), then id ('' for
# none), member count, member ids... Stores it all at once; returns the ids, or {'missing',
# parent id} when a parent does not exist (nothing is stored then).
PUSH_WORKFLOW = """
local now_iso, now_stamp, now_score, ttl, trim = ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6]
local deps_at = 8 + tonumber(ARGV[7])
-- First pass: which tasks wait, and do all their parents exist?
local tasks, pushed = {}, {}
for t = 8, deps_at - 1 do
  local f = task_fields(ARGV[t])
  tasks[#tasks + 1] = f
  pushed[f[1]] = true
end
local held, i = {}, deps_at + 1
for _ = 1, tonumber(ARGV[deps_at]) do
  held[ARGV[i]] = true
  local n = tonumber(ARGV[i + 3])
  for k = i + 4, i + 3 + n do
    local parent = ARGV[k]
    if not pushed[parent] and redis.call('EXISTS', task_key(parent)) == 0 then
      return {'missing', parent}
    end
  end
  i = i + 4 + n
end
local ids = {}
for _, f in ipairs(tasks) do ids[#ids + 1] = push_one(f, held[f[1]]) end
local resolvable = {}
i = deps_at + 1
for _ = 1, tonumber(ARGV[deps_at]) do
  local child, n = ARGV[i], tonumber(ARGV[i + 3])
  local waiting, failed = 0, 0
  for k = i + 4, i + 3 + n do
    local parent = ARGV[k]
    local status = redis.call('HGET', task_key(parent), 'status')
    if status == 'FAILED' then failed = failed + 1
    elseif status ~= 'SUCCESSFUL' then waiting = waiting + 1 end
    redis.call('RPUSH', P .. ':children:' .. parent, child)
    redis.call('RPUSH', P .. ':parents:' .. child, parent)
  end
  redis.call('HSET', task_key(child), 'waiting', waiting, 'failed_parents', failed,
    'on_parent_failure', ARGV[i + 1], 'pass_result', ARGV[i + 2])
  if waiting == 0 then resolvable[#resolvable + 1] = child end
  i = i + 4 + n
end
if ARGV[i] ~= '' then
  local gid, backend = ARGV[i], ARGV[i + 1]
  local n = tonumber(ARGV[i + 4])
  redis.call('HSET', P .. ':group:' .. gid, 'id', gid, 'backend', backend,
    'created_at', ARGV[i + 2], 'then_id', ARGV[i + 3], 'total', n)
  local members = P .. ':group:' .. gid .. ':members'
  for k = i + 5, i + 4 + n, 1000 do
    redis.call('RPUSH', members, unpack(ARGV, k, math.min(k + 999, i + 4 + n)))
  end
  redis.call('ZADD', key(backend, 'groups'), ARGV[i + 2], gid)
end
for _, child in ipairs(resolvable) do
  resolve_waiting(child, now_score, ttl, trim, now_iso, now_stamp)
end
publish_wakes()
return ids
"""

# ARGV: prefix, backend, schedule name, tick (epoch us), tick (stamp), then the task's fields
# (redis_codec.pack). Returns the id the task is known by, or nil when the tick was already
# recorded.
FIRE_TICK = """
if redis.call('ZADD', key(ARGV[2], 'ticks', ARGV[3]), 'NX', ARGV[4], ARGV[5]) == 0 then
  return false
end
local id = push_one(task_fields(ARGV[6]))
publish_wakes()
return id
"""
