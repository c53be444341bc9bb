"""The circuit breaker's Lua scripts (notifications/circuit_breaker.py): each read-modify-write
of a breaker's state is one script, so it is atomic across processes, and each reads the clock
with Redis `TIME` (microseconds). Their keys and arguments are stated above each one.
"""

from __future__ import annotations

# KEYS: 1 state hash, 2 window list, 3 permits zset.
_LUA_PRELUDE = """
local function now_us()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000000 + tonumber(t[2])
end
-- Lua would render large numbers as 1.79e+15 and lose digits; integers go out as %d.
local function fmt(n) return string.format('%d', n) end
-- Move to new_state; returns the old state and the new epoch.
local function enter(new_state, now, open_us)
  local old = redis.call('HGET', KEYS[1], 'state') or 'closed'
  local epoch = redis.call('HINCRBY', KEYS[1], 'epoch', 1)
  redis.call('DEL', KEYS[3])
  redis.call('HSET', KEYS[1], 'state', new_state, 'trial_ok', '0')
  if new_state == 'open' then
    redis.call('HSET', KEYS[1], 'opened_at', fmt(now), 'open_until', fmt(now + open_us))
  elseif new_state == 'half_open' then
    redis.call('HDEL', KEYS[1], 'open_until')
  else
    redis.call('HDEL', KEYS[1], 'opened_at', 'open_until')
  end
  if new_state == 'closed' then
    redis.call('DEL', KEYS[2])
    redis.call('HSET', KEYS[1], 'calls', '0', 'failures', '0', 'slow', '0')
  end
  if new_state ~= 'forced_open' and new_state ~= 'forced_closed' then
    redis.call('HDEL', KEYS[1], 'forced_by', 'forced_at')
  end
  return old, epoch
end
"""

# ARGV: open_us, half_open_trials, permit_ttl_us, window_size.
# Returns {allowed 0/1, epoch, permit id or '', from state or '', to state or '', state, clean 0/1}.
# clean: closed, with a full window of fast successes. A fast success recorded now would push one
# out and change nothing (list, counters and state alike), so the caller may leave it unrecorded.
LUA_ACQUIRE = (
    _LUA_PRELUDE
    + """
local h = redis.call('HMGET', KEYS[1], 'state', 'epoch', 'open_until', 'trial_ok', 'calls', 'failures', 'slow')
local state = h[1] or 'closed'
local epoch = tonumber(h[2]) or 0
if state == 'closed' then
  local clean = 0
  if (tonumber(h[5]) or 0) >= tonumber(ARGV[4]) and (tonumber(h[6]) or 0) == 0 and (tonumber(h[7]) or 0) == 0 then
    clean = 1
  end
  return {1, epoch, '', '', '', state, clean}
end
if state == 'forced_closed' then return {1, epoch, '', '', '', state, 0} end
if state == 'forced_open' then return {0, epoch, '', '', '', state, 0} end
local now = now_us()
local from, to, trial_ok = '', '', tonumber(h[4]) or 0
if state == 'open' then
  if now < (tonumber(h[3]) or 0) then return {0, epoch, '', '', '', state, 0} end
  from, epoch = enter('half_open', now, tonumber(ARGV[1]))
  to, state, trial_ok = 'half_open', 'half_open', 0
end
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', fmt(now))
if redis.call('ZCARD', KEYS[3]) + trial_ok >= tonumber(ARGV[2]) then
  return {0, epoch, '', from, to, state, 0}
end
local id = redis.call('HINCRBY', KEYS[1], 'permit_seq', 1)
redis.call('ZADD', KEYS[3], fmt(now + tonumber(ARGV[3])), id)
return {1, epoch, tostring(id), from, to, state, 0}
"""
)

# ARGV: permit epoch or '', permit id or '', failed 0/1, slow 0/1, window_size, minimum_calls,
#       failure_rate_threshold, slow_call_rate_threshold, open_us, half_open_trials.
# Returns {counted 0/1, epoch, from state or '', to state or '', state}.
LUA_RECORD = (
    _LUA_PRELUDE
    + """
local h = redis.call('HMGET', KEYS[1], 'state', 'epoch', 'calls', 'failures', 'slow')
local state = h[1] or 'closed'
local epoch = tonumber(h[2]) or 0
if ARGV[1] ~= '' and tonumber(ARGV[1]) ~= epoch then return {0, epoch, '', '', state} end
local failed, slow, open_us = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[9])
if state == 'closed' then
  local window_size = tonumber(ARGV[5])
  local calls = (tonumber(h[3]) or 0) + 1
  local failures = (tonumber(h[4]) or 0) + failed
  local slows = (tonumber(h[5]) or 0) + slow
  redis.call('LPUSH', KEYS[2], failed .. slow)
  while redis.call('LLEN', KEYS[2]) > window_size do
    local old = redis.call('RPOP', KEYS[2])
    calls = calls - 1
    failures = failures - tonumber(string.sub(old, 1, 1))
    slows = slows - tonumber(string.sub(old, 2, 2))
  end
  if redis.call('LLEN', KEYS[2]) ~= calls then
    -- counters and list disagree (a key was lost or edited by hand): recount the list.
    local items = redis.call('LRANGE', KEYS[2], 0, -1)
    calls, failures, slows = #items, 0, 0
    for _, o in ipairs(items) do
      failures = failures + tonumber(string.sub(o, 1, 1))
      slows = slows + tonumber(string.sub(o, 2, 2))
    end
  end
  redis.call('HSET', KEYS[1], 'calls', calls, 'failures', failures, 'slow', slows)
  if calls >= math.min(tonumber(ARGV[6]), window_size) and
     (failures * 100 >= tonumber(ARGV[7]) * calls or slows * 100 >= tonumber(ARGV[8]) * calls) then
    local old, e = enter('open', now_us(), open_us)
    return {1, e, old, 'open', 'open'}
  end
  return {1, epoch, '', '', state}
end
if state == 'half_open' and ARGV[2] ~= '' then
  redis.call('ZREM', KEYS[3], ARGV[2])
  if failed == 1 or slow == 1 then
    local old, e = enter('open', now_us(), open_us)
    return {1, e, old, 'open', 'open'}
  end
  if redis.call('HINCRBY', KEYS[1], 'trial_ok', 1) >= tonumber(ARGV[10]) then
    local old, e = enter('closed', now_us(), open_us)
    return {1, e, old, 'closed', 'closed'}
  end
  return {1, epoch, '', '', state}
end
return {0, epoch, '', '', state}
"""
)

# ARGV: permit epoch, permit id. Returns 1 when a half-open permit was given back.
LUA_RELEASE = """
local h = redis.call('HMGET', KEYS[1], 'state', 'epoch')
if h[1] ~= 'half_open' or (tonumber(h[2]) or 0) ~= tonumber(ARGV[1]) then return 0 end
return redis.call('ZREM', KEYS[3], ARGV[2])
"""

# ARGV: target ('forced_open' | 'forced_closed' | 'closed'), by. 'closed' also resets the window.
# Returns {from state, to state}.
LUA_FORCE = (
    _LUA_PRELUDE
    + """
local now = now_us()
local old = enter(ARGV[1], now, 0)
if ARGV[1] ~= 'closed' then
  redis.call('HSET', KEYS[1], 'forced_by', ARGV[2], 'forced_at', fmt(now))
end
return {old, ARGV[1]}
"""
)
