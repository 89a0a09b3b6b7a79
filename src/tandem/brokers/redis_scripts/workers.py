"""The scripts of the worker registry: register, heartbeat, unregister, forget the silent."""

from __future__ import annotations

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
