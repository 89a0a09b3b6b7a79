"""The scripts that end or touch a running attempt: settle, release (shutdown), recover (lease
expired), cancel and progress.
"""

from __future__ import annotations

#: Fields per settlement in ``SETTLE``.
SETTLE_FIELDS = 12

# ARGV: prefix, result TTL (ms, '0': none), then the settlements' fields packed into one value
# (redis_codec.pack: one argument instead of 12 per settlement), per settlement: id, worker id,
# status, finished_at (iso), finished_at (epoch us), finished_at (stamp), return value (JSON),
# error (JSON or ''), retry_at (iso or ''), retry_at (stamp or ''), TTL trim bound (epoch us),
# attempt token. Returns how many were written (the others' attempts lost their lease).
SETTLE = """
local ttl, written = ARGV[2], 0
local A = task_fields(ARGV[3])
for i = 1, #A, 12 do
  local id, worker, status, error = A[i], A[i + 1], A[i + 2], A[i + 7]
  local t_key = task_key(id)
  local t = redis.call('HMGET', t_key, 'status', 'worker_id', 'backend', 'queue_name',
    'errors', 'rank', 'priority', 'unique_key', 'attempt_token', 'concurrency_key')
  if t[1] == 'RUNNING' and t[2] == worker and t[9] == A[i + 11] then
    local backend, queue = t[3], t[4]
    redis.call('ZREM', key(backend, 'running', queue), id)
    free_slot(backend, queue, id, t[9], t[10])
    local errors = t[5] or '[]'
    if error ~= '' then errors = append(errors, error) end
    if status == 'READY' then
      local rank = A[i + 9] .. string.sub(t[6], 19)
      redis.call('HSET', t_key, 'status', 'READY', 'errors', errors,
        'available_at', A[i + 8], 'rank', rank, 'worker_id', '', 'lease_expires_at', '',
        'cancel_requested_at', '')
      make_ready(backend, queue, rank, t[7], A[i + 5])
    else
      local ended = {'status', status, 'errors', errors, 'finished_at', A[i + 3],
        'worker_id', '', 'lease_expires_at', '', 'cancel_requested_at', '', 'unique_key', ''}
      if error == '' then
        ended[#ended + 1] = 'return_value'
        ended[#ended + 1] = A[i + 6]
      end
      redis.call('HSET', t_key, unpack(ended))
      finish(backend, queue, id, status, t[8], A[i + 4], ttl, A[i + 10], A[i + 3],
        A[i + 5])
    end
    written = written + 1
  end
end
publish_wakes()
return written
"""

# ARGV: prefix, worker id, now (iso), now (stamp), Released error (JSON), then per attempt: task
# id, attempt token. Returns how many were put back to READY (a stale attempt's are left alone).
RELEASE = """
local worker, released = ARGV[2], 0
for i = 6, #ARGV, 2 do
  local id = ARGV[i]
  local t_key = task_key(id)
  local t = redis.call('HMGET', t_key, 'status', 'worker_id', 'backend', 'queue_name',
    'errors', 'rank', 'priority', 'attempt_token', 'concurrency_key')
  if t[1] == 'RUNNING' and t[2] == worker and t[8] == ARGV[i + 1] then
    redis.call('ZREM', key(t[3], 'running', t[4]), id)
    free_slot(t[3], t[4], id, t[8], t[9])
    local rank = ARGV[4] .. string.sub(t[6], 19)
    redis.call('HSET', t_key, 'status', 'READY', 'errors', append(t[5], ARGV[5]),
      'available_at', ARGV[3], 'rank', rank, 'worker_id', '', 'lease_expires_at', '',
      'cancel_requested_at', '')
    make_ready(t[3], t[4], rank, t[7], ARGV[4])
    released = released + 1
  end
end
publish_wakes()
return released
"""

# ARGV: prefix, recovery_max_attempts, now (iso), now (epoch us), now (stamp), result TTL (ms),
# TTL trim bound (epoch us), then per expired task: id, worker id, lease (iso) as read, WorkerLost
# error (JSON). A task whose lease was renewed or settled meanwhile is left alone.
# Returns {id, new status, worker id} per recovered task.
RECOVER = """
local recovery_max_attempts = tonumber(ARGV[2])
local now_iso, now_score, now = ARGV[3], ARGV[4], ARGV[5]
local recovered = {}
for i = 8, #ARGV, 4 do
  local id, worker = ARGV[i], ARGV[i + 1]
  local t_key = task_key(id)
  local t = redis.call('HMGET', t_key, 'status', 'worker_id', 'lease_expires_at', 'backend',
    'queue_name', 'errors', 'attempts', 'max_attempts', 'rank', 'priority', 'unique_key',
    'attempt_token', 'concurrency_key')
  if t[1] == 'RUNNING' and t[2] == worker and t[3] == ARGV[i + 2] then
    local backend, queue = t[4], t[5]
    redis.call('ZREM', key(backend, 'running', queue), id)
    free_slot(backend, queue, id, t[12], t[13])
    local errors = append(t[6], ARGV[i + 3])
    local allowed = math.max(tonumber(t[8] or '1'), recovery_max_attempts)
    if tonumber(t[7] or '0') >= allowed then
      redis.call('HSET', t_key, 'status', 'FAILED', 'errors', errors, 'finished_at', now_iso,
        'worker_id', '', 'lease_expires_at', '', 'cancel_requested_at', '', 'unique_key', '')
      finish(backend, queue, id, 'FAILED', t[11], now_score, ARGV[6], ARGV[7], now_iso, now)
      recovered[#recovered + 1] = {id, 'FAILED', worker}
    else
      local rank = now .. string.sub(t[9], 19)
      redis.call('HSET', t_key, 'status', 'READY', 'errors', errors, 'available_at', now_iso,
        'rank', rank, 'worker_id', '', 'lease_expires_at', '', 'cancel_requested_at', '')
      make_ready(backend, queue, rank, t[10], now)
      recovered[#recovered + 1] = {id, 'READY', worker}
    end
  end
end
publish_wakes()
return recovered
"""

# ARGV: prefix, backend, task id, now (iso), now (epoch us), Cancelled error (JSON), result TTL
# (ms), TTL trim bound (epoch us), now (stamp). Returns 'cancelled', 'requested', or nil.
CANCEL = """
local backend, id, now_iso = ARGV[2], ARGV[3], ARGV[4]
local t_key = task_key(id)
local t = redis.call('HMGET', t_key, 'status', 'backend', 'queue_name', 'rank', 'unique_key',
  'cancel_requested_at', 'errors')
if not t[1] or t[2] ~= backend then return false end
if t[1] == 'READY' then
  redis.call('ZREM', key(backend, 'ready', t[3]), t[4])
  redis.call('ZREM', key(backend, 'delayed', t[3]), t[4])
  redis.call('HSET', t_key, 'status', 'FAILED', 'errors', append(t[7], ARGV[6]),
    'finished_at', now_iso, 'unique_key', '')
  finish(backend, t[3], id, 'FAILED', t[5], ARGV[5], ARGV[7], ARGV[8], now_iso, ARGV[9])
  return 'cancelled'
end
if t[1] == 'RUNNING' then
  if not t[6] or t[6] == '' then redis.call('HSET', t_key, 'cancel_requested_at', now_iso) end
  return 'requested'
end
return false
"""

# ARGV: prefix, task id, worker id, progress (JSON), now (iso), attempt token. Returns 1 when
# stored.
SAVE_PROGRESS = """
local t_key = task_key(ARGV[2])
local t = redis.call('HMGET', t_key, 'status', 'worker_id', 'attempt_token')
if t[1] ~= 'RUNNING' or t[2] ~= ARGV[3] or t[3] ~= ARGV[6] then return 0 end
redis.call('HSET', t_key, 'progress', ARGV[4], 'progress_at', ARGV[5])
return 1
"""
