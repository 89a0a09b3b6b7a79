"""The Lua scripts of the Redis store: one script per state transition, each atomic in Redis.

Every script starts with ``PRELUDE`` (shared helpers) and gets the key prefix as ``ARGV[1]``. Keys
(``P`` is the prefix, ``B`` a backend alias, ``Q`` a queue name):

- ``P:task:<id>`` — HASH, the task (every ``StoredTask`` field, plus ``rank`` and ``attempts``);
  shared by all aliases, as the database table is;
- ``P:B:ready:Q`` — ZSET of READY tasks available to claim, score ``-priority``, member ``rank``
  = ``<available_at stamp>:<enqueued_at stamp>:<id>``; equal scores sort by member, so one
  ``ZRANGE`` gives the claim order (priority, then available_at, then enqueued_at);
- ``P:B:delayed:Q`` — ZSET (all scores 0, read by ``ZRANGEBYLEX``) of READY tasks not yet
  available, member ``rank``; a claim moves the due ones to the ready set;
- ``P:B:running:Q`` — ZSET of RUNNING tasks, score ``lease_expires_at`` (epoch µs), member id;
- ``P:B:successful:Q``, ``P:B:failed:Q`` — ZSETs of finished tasks, score ``finished_at``
  (epoch µs), member id (for ``stats`` and ``prune``);
- ``P:B:queues`` — SET of the queue names the alias has used;
- ``P:B:paused`` — HASH paused queue name -> when it was paused (ISO 8601); claims skip them;
- ``P:B:unique`` — HASH unique key -> id of the READY or RUNNING task holding it;
- ``P:B:slots:<key>`` — HASH task id -> attempt token: the running attempts holding one of a
  concurrency key's slots (at most the task's ``concurrency_limit``); taken by a claim, deleted
  by that attempt's settle, release or recovery;
- ``P:B:rate:<limit key>`` — ZSET of the starts (score: epoch us on the claim's clock) of a rate
  limit's window (``task:<path>``, or ``pool:<queues>`` for a pool's); ``P:B:rates`` — HASH limit
  key -> its rate, for the status page;
- ``P:B:ticks:<schedule>`` — ZSET of recorded schedule ticks, score epoch µs, member stamp;
- ``P:B:workers`` — ZSET of registered workers, score last heartbeat (epoch µs);
  ``P:worker:<id>`` — HASH, one worker;
- workflows (``brokers.workflow``): ``P:parents:<id>`` / ``P:children:<id>`` — LISTs of a task's
  parents (in the order given) and of the tasks waiting for it; a waiting task's hash also has
  ``waiting`` (unfinished parents), ``failed_parents``, ``on_parent_failure`` and
  ``pass_result``, and it is in no ready or delayed set until ``finish`` of its last parent
  resolves it; ``P:group:<id>`` — HASH, a group; ``P:group:<id>:members`` — LIST of its task ids;
  ``P:B:groups`` — ZSET of the alias's groups, score created_at (epoch µs);
- ``P:B:wake`` — the pub/sub channel the scripts publish to when tasks become claimable
  (message: comma-separated queue names).

A *stamp* is a datetime as 18 zero-padded digits of microseconds since 0001-01-01 UTC: stamps of
equal length compare as strings exactly as the datetimes compare, with no float rounding.

Scripts compute key names from the ids they read (a claim cannot know them beforehand), so the
store needs a single Redis primary: Redis Cluster is not supported.
"""

from __future__ import annotations

PRELUDE = """
local P = ARGV[1]
local woken = {}

local function task_key(id) return P .. ':task:' .. id end

local function key(backend, kind, name)
  if name then return P .. ':' .. backend .. ':' .. kind .. ':' .. name end
  return P .. ':' .. backend .. ':' .. kind
end

-- rank = '<available stamp>:<enqueued stamp>:<id>'
local function id_of(rank) return string.sub(rank, 39) end

-- Digit strings of one length compare as their numbers, whatever the server's collation.
local function claim_order(a, b)
  if a[1] ~= b[1] then return a[1] < b[1] end
  local x, y = string.sub(a[2], 1, 18), string.sub(b[2], 1, 18)
  if x ~= y then return x < y end
  return string.sub(a[2], 20, 37) < string.sub(b[2], 20, 37)
end

-- The store's clock (TIME), in microseconds since the Unix epoch (exact in a Lua number).
local function store_now_us()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000000 + tonumber(t[2])
end

-- Epoch microseconds as ISO 8601 UTC text (days to a civil date: H. Hinnant's algorithm).
local function iso_of(us)
  local secs = math.floor(us / 1000000)
  local micro = us - secs * 1000000
  local days = math.floor(secs / 86400)
  local rem = secs - days * 86400
  local z = days + 719468
  local era = math.floor(z / 146097)
  local doe = z - era * 146097
  local yoe = math.floor((doe - math.floor(doe / 1460) + math.floor(doe / 36524)
    - math.floor(doe / 146096)) / 365)
  local doy = doe - (365 * yoe + math.floor(yoe / 4) - math.floor(yoe / 100))
  local mp = math.floor((5 * doy + 2) / 153)
  local d = doy - math.floor((153 * mp + 2) / 5) + 1
  local m = mp < 10 and mp + 3 or mp - 9
  local y = yoe + era * 400
  if m <= 2 then y = y + 1 end
  return string.format('%04d-%02d-%02dT%02d:%02d:%02d.%06d+00:00', y, m, d,
    math.floor(rem / 3600), math.floor((rem % 3600) / 60), rem % 60, micro)
end

-- A lease end as (iso, epoch us text): as the caller sent it, or, when `iso` is '' (leases on
-- the store's clock), `us` microseconds after the store's TIME.
local function lease_of(iso, us)
  if iso ~= '' then return iso, us end
  local at = store_now_us() + tonumber(us)
  return iso_of(at), string.format('%.0f', at)
end

-- Append one JSON value to a JSON array held as text.
local function append(array, item)
  if not array or array == '[]' or array == '' then return '[' .. item .. ']' end
  return string.sub(array, 1, -2) .. ',' .. item .. ']'
end

-- Flow control (CLAIM, CLAIM_STARVED set it): result TTL (ms), TTL trim bound and now (epoch
-- us, stamp), for a discarded task's finish().
local flow = {}
local finish

-- Rate limits: 'N/s', 'N/m' or 'N/h' as (N, window in us); nil for ''.
local UNIT_US = {s = 1000000, m = 60000000, h = 3600000000}
local function rate_of(rate)
  if not rate or rate == '' then return nil end
  local n, unit = string.match(rate, '^(%d+)/([smh])$')
  if not n then return nil end
  return tonumber(n), UNIT_US[unit]
end

-- How many more starts the window of limit `lkey` lets in at flow.rate_now (pruning it).
local function rate_room(backend, lkey, rate)
  local n, window = rate_of(rate)
  if not n then return 1000000000 end
  local z = key(backend, 'rate', lkey)
  redis.call('ZREMRANGEBYSCORE', z, '-inf', string.format('%.0f', flow.rate_now - window))
  return n - redis.call('ZCARD', z)
end

-- Log a start against limit `lkey`.
local function rate_start(backend, lkey, rate, member)
  local n, window = rate_of(rate)
  if not n then return end
  local z = key(backend, 'rate', lkey)
  redis.call('ZADD', z, string.format('%.0f', flow.rate_now), member)
  redis.call('PEXPIRE', z, math.floor(window / 1000) + 1000)
  redis.call('HSET', key(backend, 'rates'), lkey, rate)
end

-- A claim's rate clock (the store's TIME when leases are on it: lease iso '') and pool rate.
local function flow_rates(lease_iso, now_us, pool_rate, pool_key)
  if lease_iso == '' then flow.rate_now = store_now_us() else flow.rate_now = tonumber(now_us) end
  flow.pending = {}
  if pool_rate ~= '' then flow.pool_rate, flow.pool_key = pool_rate, pool_key end
end

-- Whether task `id`'s own rate is used up now (only inside a claim, which sets flow);
-- `reserve`: the claim lists it as a candidate, which takes one start of the room left (so a
-- batch lists no more tasks of a path than its window lets start, and other work fills it).
local function over_rate(backend, id, reserve)
  if not flow.rate_now then return false end
  local r = redis.call('HMGET', task_key(id), 'rate_limit', 'task_path')
  if not r[1] or r[1] == '' then return false end
  local lkey = 'task:' .. r[2]
  local used = 0
  if reserve then used = flow.pending[lkey] or 0 end
  if rate_room(backend, lkey, r[1]) - used <= 0 then return true end
  if reserve then flow.pending[lkey] = used + 1 end
  return false
end

-- Whether task `id` must wait for a slot of its concurrency key ('discard' tasks never wait).
local function blocked(backend, id)
  local c = redis.call('HMGET', task_key(id), 'concurrency_key', 'concurrency_limit', 'on_limit')
  if c[1] and c[1] ~= '' and c[3] ~= 'discard' and
      redis.call('HLEN', key(backend, 'slots', c[1])) >= tonumber(c[2] or '1') then
    return true
  end
  return over_rate(backend, id, true)
end

-- Attempt `token` of task `id` gives back its concurrency slot, if it holds one.
local function free_slot(backend, queue, id, token)
  local ck = redis.call('HGET', task_key(id), 'concurrency_key')
  if not ck or ck == '' then return end
  local slots = key(backend, 'slots', ck)
  if redis.call('HGET', slots, id) == token then
    redis.call('HDEL', slots, id)
    woken[backend] = woken[backend] or {}
    woken[backend][queue] = true
  end
end

-- A keyed task takes a slot for attempt `token`: true, or false when the key is full (a
-- 'discard' task then ends FAILED with ConcurrencyLimited, out of the ready set).
local function take_slot(backend, queue, rank, id, token, now_iso)
  local t_key = task_key(id)
  local c = redis.call('HMGET', t_key, 'concurrency_key', 'concurrency_limit', 'on_limit',
    'errors', 'unique_key')
  if not c[1] or c[1] == '' then return true end
  local slots = key(backend, 'slots', c[1])
  if redis.call('HLEN', slots) < tonumber(c[2] or '1') then
    redis.call('HSET', slots, id, token)
    return true
  end
  if c[3] == 'discard' then
    redis.call('ZREM', key(backend, 'ready', queue), rank)
    local text = 'tandem.exceptions.ConcurrencyLimited: task ' .. id .. ' did not run: ' ..
      'concurrency key "' .. c[1] .. '" already had ' .. (c[2] or '1') ..
      ' running task(s) at ' .. now_iso .. ', and it was enqueued with on_limit="discard".\\n'
    local error = cjson.encode({exception_class_path = 'tandem.exceptions.ConcurrencyLimited',
      traceback = text})
    redis.call('HSET', t_key, 'status', 'FAILED', 'errors', append(c[4], error),
      'finished_at', now_iso, 'unique_key', '')
    finish(backend, queue, id, 'FAILED', c[5], flow.score, flow.ttl, flow.trim, now_iso,
      flow.now)
  end
  return false
end

-- Claim the task at `rank` of `queue`'s ready set for `worker` (CLAIM, CLAIM_STARVED): the
-- task's hash after the claim, or nil when it was no longer READY or must wait for a slot of
-- its concurrency key (it stays in the ready set).
local function take(backend, queue, rank, worker, token, lease_iso, lease_score, now_iso, entry)
  local id = id_of(rank)
  local t_key = task_key(id)
  local t = redis.call('HMGET', t_key, 'status', 'started_at', 'worker_ids')
  if t[1] ~= 'READY' then
    redis.call('ZREM', key(backend, 'ready', queue), rank)
    return nil
  end
  if over_rate(backend, id) then return nil end
  if not take_slot(backend, queue, rank, id, token, now_iso) then return nil end
  redis.call('ZREM', key(backend, 'ready', queue), rank)
  local r = redis.call('HMGET', t_key, 'rate_limit', 'task_path')
  rate_start(backend, 'task:' .. (r[2] or ''), r[1], token .. ':' .. id)
  if flow.pool_rate then rate_start(backend, flow.pool_key, flow.pool_rate, token .. ':' .. id) end
  local started = t[2]
  if not started or started == '' then started = now_iso end
  redis.call('HSET', t_key, 'status', 'RUNNING', 'worker_id', worker, 'attempt_token', token,
    'lease_expires_at', lease_iso, 'started_at', started, 'last_attempted_at', now_iso,
    'worker_ids', append(t[3], entry))
  redis.call('HINCRBY', t_key, 'attempts', 1)
  redis.call('ZADD', key(backend, 'running', queue), lease_score, id)
  return redis.call('HGETALL', t_key)
end

local function wake(backend, queue)
  woken[backend] = woken[backend] or {}
  woken[backend][queue] = true
end

-- The queue names ARGV[first], ARGV[first + 1], ... less those paused on `backend`.
local function unpaused(backend, first)
  local paused, queues = key(backend, 'paused'), {}
  for q = first, #ARGV do
    if redis.call('HEXISTS', paused, ARGV[q]) == 0 then queues[#queues + 1] = ARGV[q] end
  end
  return queues
end

local function publish_wakes()
  for backend, queues in pairs(woken) do
    local names = {}
    for queue in pairs(queues) do names[#names + 1] = queue end
    table.sort(names)
    redis.call('PUBLISH', key(backend, 'wake'), table.concat(names, ','))
  end
end

-- A READY task joins its queue: the ready set when it is available by `now` (a stamp; a
-- claimer with an earlier clock still skips it), else the delayed set, until a claim moves it.
local function make_ready(backend, queue, rank, priority, now)
  if string.sub(rank, 1, 18) <= now then
    redis.call('ZADD', key(backend, 'ready', queue), 0 - tonumber(priority), rank)
    wake(backend, queue)
  else
    redis.call('ZADD', key(backend, 'delayed', queue), 0, rank)
  end
end

-- A task ended SUCCESSFUL or FAILED: free its unique key, index it for stats and prune, and
-- let it expire after the result TTL (ttl_ms '0': kept until pruned). Index entries older
-- than the TTL (trim_below, epoch us) are dropped with it: their hashes have expired.
local resolve_children

finish = function(backend, queue, id, status, unique_key, finished_score, ttl_ms, trim_below,
                      now_iso, now_stamp)
  if unique_key and unique_key ~= '' then
    local unique = key(backend, 'unique')
    if redis.call('HGET', unique, unique_key) == id then redis.call('HDEL', unique, unique_key) end
  end
  local done = key(backend, string.lower(status), queue)
  redis.call('ZADD', done, finished_score, id)
  if ttl_ms ~= '0' then
    redis.call('PEXPIRE', task_key(id), ttl_ms)
    redis.call('ZREMRANGEBYSCORE', done, '-inf', '(' .. trim_below)
  end
  resolve_children(id, status, finished_score, ttl_ms, trim_below, now_iso, now_stamp)
end

-- Workflows: a waiting task whose last parent finished runs (made ready; a chain step gets its
-- parent's return value as its first argument) or, when a parent FAILED and it was enqueued
-- with on_parent_failure 'fail', ends FAILED with DependencyFailed (resolving its own children).
local function resolve_waiting(child, finished_score, ttl_ms, trim_below, now_iso, now_stamp)
  local c_key = task_key(child)
  local c = redis.call('HMGET', c_key, 'status', 'failed_parents', 'on_parent_failure',
    'pass_result', 'backend', 'queue_name', 'rank', 'priority', 'errors', 'unique_key', 'args')
  if c[1] ~= 'READY' then return end
  local failed = tonumber(c[2] or '0') or 0
  if failed > 0 and c[3] == 'fail' then
    local text = 'tandem.exceptions.DependencyFailed: task ' .. child .. ' did not run: ' ..
      failed .. ' of its parent tasks ended FAILED (resolved at ' .. now_iso ..
      '), and it was enqueued with on_parent_failure="fail".\\n'
    local error = cjson.encode({exception_class_path = 'tandem.exceptions.DependencyFailed',
      traceback = text})
    redis.call('HSET', c_key, 'status', 'FAILED', 'errors', append(c[9], error),
      'finished_at', now_iso, 'unique_key', '')
    finish(c[5], c[6], child, 'FAILED', c[10], finished_score, ttl_ms, trim_below, now_iso,
      now_stamp)
    return
  end
  if c[4] == '1' then
    local parent = redis.call('LINDEX', P .. ':parents:' .. child, 0)
    local value = parent and redis.call('HGET', task_key(parent), 'return_value') or 'null'
    if not value then value = 'null' end
    local args = c[11]
    if args == '[]' then args = '[' .. value .. ']'
    else args = '[' .. value .. ',' .. string.sub(args, 2) end
    redis.call('HSET', c_key, 'args', args)
  end
  local rank = c[7]
  -- Claimable from now on, or from its run_after when that is later.
  local run_after = redis.call('HGET', c_key, 'run_after')
  if not run_after or run_after == '' or string.sub(rank, 1, 18) < now_stamp then
    rank = now_stamp .. string.sub(rank, 19)
    redis.call('HSET', c_key, 'available_at', now_iso)
  end
  redis.call('HSET', c_key, 'rank', rank, 'waiting', '0')
  make_ready(c[5], c[6], rank, c[8], now_stamp)
end

resolve_children = function(id, status, finished_score, ttl_ms, trim_below, now_iso, now_stamp)
  local children_key = P .. ':children:' .. id
  local children = redis.call('LRANGE', children_key, 0, -1)
  for _, child in ipairs(children) do
    local c_key = task_key(child)
    local waiting = tonumber(redis.call('HGET', c_key, 'waiting') or '0') or 0
    if waiting > 0 then
      if status == 'FAILED' then redis.call('HINCRBY', c_key, 'failed_parents', 1) end
      if redis.call('HINCRBY', c_key, 'waiting', -1) == 0 then
        resolve_waiting(child, finished_score, ttl_ms, trim_below, now_iso, now_stamp)
      end
    end
  end
  if ttl_ms ~= '0' then
    redis.call('PEXPIRE', children_key, ttl_ms)
    redis.call('PEXPIRE', P .. ':parents:' .. id, ttl_ms)
  end
end

-- Store one new task from ARGV[i .. i + 19]; return the id it is known by (an active task's
-- for a unique key already held). A `held` task (a workflow's waiting task) joins no set.
local function push_one(i, held)
  local id, backend, queue, priority = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 4]
  local unique_key, rank = ARGV[i + 13], ARGV[i + 14]
  if unique_key ~= '' then
    local unique = key(backend, 'unique')
    local holder = redis.call('HGET', unique, unique_key)
    if holder then
      local status = redis.call('HGET', task_key(holder), 'status')
      if status == 'READY' or status == 'RUNNING' then return holder end
    end
    redis.call('HSET', unique, unique_key, id)
  end
  redis.call('HSET', task_key(id),
    'id', id, 'backend', backend, 'queue_name', queue, 'task_path', ARGV[i + 3],
    'priority', priority, 'takes_context', ARGV[i + 5], 'status', 'READY',
    'args', ARGV[i + 6], 'kwargs', ARGV[i + 7], 'run_after', ARGV[i + 8],
    'available_at', ARGV[i + 9], 'enqueued_at', ARGV[i + 10], 'max_attempts', ARGV[i + 11],
    'timeout', ARGV[i + 12], 'unique_key', unique_key, 'rank', rank,
    'started_at', '', 'last_attempted_at', '', 'finished_at', '', 'return_value', 'null',
    'errors', '[]', 'worker_ids', '[]', 'attempts', '0', 'worker_id', '',
    'lease_expires_at', '', 'progress', 'null', 'progress_at', '', 'cancel_requested_at', '',
    'trace_context', ARGV[i + 15], 'concurrency_key', ARGV[i + 16],
    'concurrency_limit', ARGV[i + 17], 'on_limit', ARGV[i + 18], 'rate_limit', ARGV[i + 19])
  redis.call('SADD', key(backend, 'queues'), queue)
  if held then return id end
  -- Available by its enqueuer's clock: straight to the ready set.
  make_ready(backend, queue, rank, priority, string.sub(rank, 20, 37))
  return id
end
"""

#: Fields per task in ``PUSH`` and ``FIRE_TICK`` (see ``push_one``).
PUSH_FIELDS = 20

# ARGV: prefix, then PUSH_FIELDS per task. Returns the id each task is known by.
PUSH = """
local ids = {}
for i = 2, #ARGV, 20 do ids[#ids + 1] = push_one(i) end
publish_wakes()
return ids
"""

# ARGV: prefix, backend, limit, worker id, worker id as JSON, lease (iso, or '' on the store's
# clock), lease (epoch us, or its length in us on the store's clock), now (iso), now (stamp),
# attempt token, result TTL (ms), TTL trim bound (epoch us), now (epoch us), the pool's rate
# ('' for none) and its limit key, queue names... Returns the claimed tasks (HGETALL each), in
# order.
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

#: Fields per settlement in ``SETTLE``.
SETTLE_FIELDS = 12

# ARGV: prefix, result TTL (ms, '0': none), then per settlement: id, worker id, status,
# finished_at (iso), finished_at (epoch us), finished_at (stamp), return value (JSON), error
# (JSON or ''), retry_at (iso or ''), retry_at (stamp or ''), TTL trim bound (epoch us), attempt
# token. Returns how many were written (the others' attempts lost their lease).
SETTLE = """
local ttl, written = ARGV[2], 0
for i = 3, #ARGV, 12 do
  local id, worker, status, error = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 7]
  local t_key = task_key(id)
  local t = redis.call('HMGET', t_key, 'status', 'worker_id', 'backend', 'queue_name',
    'errors', 'rank', 'priority', 'unique_key', 'attempt_token')
  if t[1] == 'RUNNING' and t[2] == worker and t[9] == ARGV[i + 11] then
    local backend, queue = t[3], t[4]
    redis.call('ZREM', key(backend, 'running', queue), id)
    free_slot(backend, queue, id, t[9])
    local errors = t[5]
    if error ~= '' then errors = append(errors, error) end
    if status == 'READY' then
      local rank = ARGV[i + 9] .. string.sub(t[6], 19)
      redis.call('HSET', t_key, 'status', 'READY', 'errors', errors,
        'available_at', ARGV[i + 8], 'rank', rank, 'worker_id', '', 'lease_expires_at', '',
        'cancel_requested_at', '')
      make_ready(backend, queue, rank, t[7], ARGV[i + 5])
    else
      redis.call('HSET', t_key, 'status', status, 'errors', errors,
        'finished_at', ARGV[i + 3], 'worker_id', '', 'lease_expires_at', '',
        'cancel_requested_at', '', 'unique_key', '')
      if error == '' then redis.call('HSET', t_key, 'return_value', ARGV[i + 6]) end
      finish(backend, queue, id, status, t[8], ARGV[i + 4], ttl, ARGV[i + 10], ARGV[i + 3],
        ARGV[i + 5])
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
    'errors', 'rank', 'priority', 'attempt_token')
  if t[1] == 'RUNNING' and t[2] == worker and t[8] == ARGV[i + 1] then
    redis.call('ZREM', key(t[3], 'running', t[4]), id)
    free_slot(t[3], t[4], id, t[8])
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
    'attempt_token')
  if t[1] == 'RUNNING' and t[2] == worker and t[3] == ARGV[i + 2] then
    local backend, queue = t[4], t[5]
    redis.call('ZREM', key(backend, 'running', queue), id)
    free_slot(backend, queue, id, t[12])
    local errors = append(t[6], ARGV[i + 3])
    local allowed = math.max(tonumber(t[8]), recovery_max_attempts)
    if tonumber(t[7]) >= allowed then
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

# ARGV: prefix, backend, schedule name, tick (epoch us), tick (stamp), then PUSH_FIELDS for the
# task. Returns the id the task is known by, or nil when the tick was already recorded.
FIRE_TICK = """
if redis.call('ZADD', key(ARGV[2], 'ticks', ARGV[3]), 'NX', ARGV[4], ARGV[5]) == 0 then
  return false
end
local id = push_one(6)
publish_wakes()
return id
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

# ARGV: prefix, worker id, backend, hostname, pid, queues (JSON), pools (JSON), started_at
# (iso), last heartbeat (iso), last heartbeat (epoch us), tasks done.
REGISTER_WORKER = """
local id, backend = ARGV[2], ARGV[3]
local w_key = P .. ':worker:' .. id
local previous = redis.call('HGET', w_key, 'backend')
if previous and previous ~= backend then redis.call('ZREM', key(previous, 'workers'), id) end
redis.call('DEL', w_key)
redis.call('HSET', w_key, 'id', id, 'backend', backend, 'hostname', ARGV[4], 'pid', ARGV[5],
  'queues', ARGV[6], 'pools', ARGV[7], 'started_at', ARGV[8], 'last_heartbeat_at', ARGV[9],
  'tasks_done', ARGV[11])
redis.call('ZADD', key(backend, 'workers'), ARGV[10], id)
return 1
"""

# ARGV: prefix, worker id, now (iso), now (epoch us), tasks done, pools (JSON or '').
HEARTBEAT_WORKER = """
local id = ARGV[2]
local w_key = P .. ':worker:' .. id
local backend = redis.call('HGET', w_key, 'backend')
if not backend then return 0 end
redis.call('HSET', w_key, 'last_heartbeat_at', ARGV[3], 'tasks_done', ARGV[5])
if ARGV[6] ~= '' then redis.call('HSET', w_key, 'pools', ARGV[6]) end
redis.call('ZADD', key(backend, 'workers'), ARGV[4], id)
return 1
"""

# ARGV: prefix, worker id.
UNREGISTER_WORKER = """
local id = ARGV[2]
local w_key = P .. ':worker:' .. id
local backend = redis.call('HGET', w_key, 'backend')
if backend then redis.call('ZREM', key(backend, 'workers'), id) end
return redis.call('DEL', w_key)
"""

# ARGV: prefix, backend, silent since (epoch us). Returns how many workers were removed.
FORGET_WORKERS = """
local registry = key(ARGV[2], 'workers')
local ids = redis.call('ZRANGEBYSCORE', registry, '-inf', '(' .. ARGV[3])
for _, id in ipairs(ids) do
  redis.call('DEL', P .. ':worker:' .. id)
  redis.call('ZREM', registry, id)
end
return #ids
"""

# ARGV: prefix, now (iso), now (stamp), now (epoch us), result TTL (ms), TTL trim bound, task
# count, PUSH_FIELDS per task, dependency count, then per dependency: task id,
# on_parent_failure, pass_result ('1'/'0'), parent count, parent ids...; then group id ('' for
# none), and for a group: backend, created_at (epoch us), then id ('' for none), member count,
# member ids... Stores it all at once; returns the ids, or {'missing', parent id} when a
# parent does not exist (nothing is stored then).
PUSH_WORKFLOW = """
local now_iso, now_stamp, now_score, ttl, trim = ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6]
local n_tasks = tonumber(ARGV[7])
local deps_at = 8 + n_tasks * 20
-- First pass: which tasks wait, and do all their parents exist?
local pushed = {}
for t = 8, deps_at - 1, 20 do pushed[ARGV[t]] = true end
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
for t = 8, deps_at - 1, 20 do ids[#ids + 1] = push_one(t, held[ARGV[t]]) end
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

#: Every script by name, without the prelude.
SCRIPTS = {
    "push": PUSH,
    "claim": CLAIM,
    "has_ready": HAS_READY,
    "renew": RENEW,
    "settle": SETTLE,
    "release": RELEASE,
    "recover": RECOVER,
    "cancel": CANCEL,
    "save_progress": SAVE_PROGRESS,
    "prune": PRUNE,
    "count_finished": COUNT_FINISHED,
    "fire_tick": FIRE_TICK,
    "push_workflow": PUSH_WORKFLOW,
    "prune_ticks": PRUNE_TICKS,
    "stats": STATS,
    "register_worker": REGISTER_WORKER,
    "heartbeat_worker": HEARTBEAT_WORKER,
    "unregister_worker": UNREGISTER_WORKER,
    "forget_workers": FORGET_WORKERS,
    "pause": PAUSE,
    "resume": RESUME,
    "retry_failed": RETRY_FAILED,
    "claim_starved": CLAIM_STARVED,
}
