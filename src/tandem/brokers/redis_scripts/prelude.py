"""``PRELUDE``: the Lua helpers every script starts with. Keys, wake-ups and making a task ready
(``BASE``); stamps and the store's clock, flow control (rate limits, concurrency slots), claiming
one task, finishing a task and resolving the workflow children waiting for it; storing a new task
(``PUSH_ONE``).

Lua locals must be defined before use, so the helpers are in dependency order. Redis runs a
script's whole text on every call, helper definitions included, so ``PUSH`` (every enqueue) starts
with ``PUSH_PRELUDE``: only the helpers it needs.
"""

from __future__ import annotations

BASE = """
local P = ARGV[1]
local woken = {}

local function task_key(id) return P .. ':task:' .. id end

local function key(backend, kind, name)
  if name then return P .. ':' .. backend .. ':' .. kind .. ':' .. name end
  return P .. ':' .. backend .. ':' .. kind
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

"""

REST = """
-- rank = '<available stamp>:<enqueued stamp>:<id>'
local function id_of(rank) return string.sub(rank, 39) end

-- Digit strings of one length compare as their numbers, whatever the server's collation.
local function claim_order(a, b)
  if a[1] ~= b[1] then return a[1] < b[1] end
  local x, y = string.sub(a[2], 1, 18), string.sub(b[2], 1, 18)
  if x ~= y then return x < y end
  return string.sub(a[2], 20, 37) < string.sub(b[2], 20, 37)
end

-- The store's clock (TIME), in microseconds since the Unix epoch (exact in a Lua number): read
-- once per script run (a claim's lease and its rate clock ask for it), which is one moment.
local clock_us
local function store_now_us()
  if not clock_us then
    local t = redis.call('TIME')
    clock_us = tonumber(t[1]) * 1000000 + tonumber(t[2])
  end
  return clock_us
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

-- The fields of a task that a claim reads, in one HMGET per task and script run: a claim reads a
-- candidate's flow control, then its state when it takes it, and nothing the script writes in
-- between changes them (a take changes only its own task, once).
local VIEW = {'concurrency_key', 'concurrency_limit', 'on_limit', 'rate_limit', 'task_path',
  'status', 'started_at', 'worker_ids', 'errors', 'unique_key', 'attempts'}
local viewed = {}
local function view(id)
  local v = viewed[id]
  if not v then
    v = redis.call('HMGET', task_key(id), unpack(VIEW))
    viewed[id] = v
  end
  return v
end

-- Whether task `id`'s own rate is used up now (only inside a claim, which sets flow);
-- `reserve`: the claim lists it as a candidate, which takes one start of the room left (so a
-- batch lists no more tasks of a path than its window lets start, and other work fills it).
local function over_rate(backend, id, reserve)
  if not flow.rate_now then return false end
  local v = view(id)
  local rate = v[4]
  if not rate or rate == '' then return false end
  local lkey = 'task:' .. v[5]
  local used = 0
  if reserve then used = flow.pending[lkey] or 0 end
  if rate_room(backend, lkey, rate) - used <= 0 then return true end
  if reserve then flow.pending[lkey] = used + 1 end
  return false
end

-- Whether task `id` must wait for a slot of its concurrency key ('discard' tasks never wait).
local function blocked(backend, id)
  local c = view(id)
  if c[1] and c[1] ~= '' and c[3] ~= 'discard' and
      redis.call('HLEN', key(backend, 'slots', c[1])) >= tonumber(c[2] or '1') then
    return true
  end
  return over_rate(backend, id, true)
end

-- Attempt `token` of task `id` (concurrency key `ck`, as its caller read it with the task's
-- other fields) gives back its concurrency slot, if it holds one.
local function free_slot(backend, queue, id, token, ck)
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
  local c = view(id)
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
    redis.call('HSET', t_key, 'status', 'FAILED', 'errors', append(c[9], error),
      'finished_at', now_iso, 'unique_key', '')
    finish(backend, queue, id, 'FAILED', c[10], flow.score, flow.ttl, flow.trim, now_iso,
      flow.now)
  end
  return false
end

-- Claim the task at `rank` of `queue`'s ready set for `worker` (CLAIM, CLAIM_STARVED): the
-- task's hash after the claim (HGETALL's fields and values packed in one string), or nil when
-- it was no longer READY or must wait for a slot of its concurrency key (it stays in the ready
-- set).
local function take(backend, queue, rank, worker, token, lease_iso, lease_score, now_iso, entry)
  local id = id_of(rank)
  local t_key = task_key(id)
  local t = view(id)
  if t[6] ~= 'READY' then
    redis.call('ZREM', key(backend, 'ready', queue), rank)
    return nil
  end
  if over_rate(backend, id) then return nil end
  if not take_slot(backend, queue, rank, id, token, now_iso) then return nil end
  redis.call('ZREM', key(backend, 'ready', queue), rank)
  rate_start(backend, 'task:' .. (t[5] or ''), t[4], token .. ':' .. id)
  if flow.pool_rate then rate_start(backend, flow.pool_key, flow.pool_rate, token .. ':' .. id) end
  local started = t[7]
  if not started or started == '' then started = now_iso end
  -- attempts + 1 in the same HSET (read with the view; a missing field is 0 attempts).
  redis.call('HSET', t_key, 'status', 'RUNNING', 'worker_id', worker, 'attempt_token', token,
    'lease_expires_at', lease_iso, 'started_at', started, 'last_attempted_at', now_iso,
    'worker_ids', append(t[8], entry), 'attempts', (tonumber(t[11]) or 0) + 1)
  redis.call('ZADD', key(backend, 'running', queue), lease_score, id)
  -- The hash as one JSON array of its fields and values (cjson: C, in Redis; json.loads in
  -- the client): one reply to parse, not one per field and value, which is most of what a
  -- worker's client spends on a claim.
  return cjson.encode(redis.call('HGETALL', t_key))
end

-- A task ended SUCCESSFUL or FAILED: free its unique key, index it for stats and prune, and
-- let it expire after the result TTL (ttl_ms '0': kept until pruned). Index entries older
-- than the TTL (trim_below, epoch us) are dropped with it: their hashes have expired.
-- Each index is trimmed once per script run, to the bound of the batch's first task: what a
-- later task's bound would add is trimmed by the next run (and stats and counts trim first).
local resolve_children
local trimmed = {}

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
    if not trimmed[done] then
      trimmed[done] = true
      redis.call('ZREMRANGEBYSCORE', done, '-inf', '(' .. trim_below)
    end
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
    if #children > 0 then redis.call('PEXPIRE', children_key, ttl_ms) end  -- (else no key)
    redis.call('PEXPIRE', P .. ':parents:' .. id, ttl_ms)
  end
end

"""

PUSH_ONE = """
-- A new task's fields from the one ARGV value that carries them (redis_codec.pack): their
-- lengths in bytes, comma-separated, then ';' and the fields one after another.
local function task_fields(packed)
  local head = string.find(packed, ';', 1, true)
  local f, at = {}, head + 1
  for n in string.gmatch(string.sub(packed, 1, head - 1), '%d+') do
    local stop = at + tonumber(n)
    f[#f + 1] = string.sub(packed, at, stop - 1)
    at = stop
  end
  return f
end

-- Store one new task from its fields `f` (task_fields): id, backend, queue, task_path,
-- priority, args, kwargs, enqueued_at, max_attempts, rank, unique_key, then the field/value
-- pairs of the fields that differ from their defaults (push_fields). A field left out of the
-- hash reads as its default ('', 'null', '[]', '0'...; available_at: enqueued_at). Returns the
-- id the task is known by (an active task's for a unique key already held). A `held` task (a
-- workflow's waiting task) joins no set.
local function push_one(f, held)
  local id, backend, queue, priority, rank, unique_key = f[1], f[2], f[3], f[5], f[10], f[11]
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
    'id', id, 'backend', backend, 'queue_name', queue, 'task_path', f[4],
    'priority', priority, 'status', 'READY', 'args', f[6], 'kwargs', f[7],
    'enqueued_at', f[8], 'max_attempts', f[9], 'rank', rank, unpack(f, 12))
  redis.call('SADD', key(backend, 'queues'), queue)
  if held then return id end
  -- Available by its enqueuer's clock: straight to the ready set.
  make_ready(backend, queue, rank, priority, string.sub(rank, 20, 37))
  return id
end
"""

#: The helpers of every script but ``PUSH``.
PRELUDE = BASE + REST + PUSH_ONE

#: ``PUSH``'s helpers: storing a task and waking its queue.
PUSH_PRELUDE = BASE + PUSH_ONE
