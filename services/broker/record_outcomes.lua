-- Apply a batch of group outcomes atomically and idempotently (ghpo guidance broker).
-- KEYS[1] = stats hash; then per outcome i: KEYS[2i] = prompt hash, KEYS[2i+1] = applied-update-id key.
-- ARGV[1] = update-id TTL (s), ARGV[2] = number of outcomes, then per outcome:
--   step, policy_version, n_results, then n_results x (level, correct, G), in escalation order.
-- Returns one flag per outcome: 1 applied, 0 duplicate (its update id was already applied).
-- The whole batch runs as one script, so Redis applies all of it or none of it.
-- Counters are read once (HMGET) and written once (HSET) per prompt, and the global stats are summed
-- in a Lua table and written once per batch: a few Redis calls per outcome instead of twenty.
local ttl = tonumber(ARGV[1])
local nitems = tonumber(ARGV[2])
local pos = 3
local applied = {}
local stats = {}
local function bump(name, by)
  stats[name] = (stats[name] or 0) + by
end
for i = 1, nitems do
  local pkey = KEYS[2 * i]
  local ukey = KEYS[2 * i + 1]
  local step = tonumber(ARGV[pos])
  local version = ARGV[pos + 1]
  local n = tonumber(ARGV[pos + 2])
  pos = pos + 3
  if not redis.call('SET', ukey, '1', 'NX', 'EX', ttl) then
    applied[i] = 0
    bump('duplicates', 1)
    pos = pos + 3 * n
  else
    applied[i] = 1
    local names = {'visits', 'last_step'}
    for j = 0, n - 1 do
      local level = ARGV[pos + 3 * j]
      table.insert(names, 'n' .. level)
      table.insert(names, 'c' .. level)
      table.insert(names, 'w' .. level)
    end
    local old = redis.call('HMGET', pkey, unpack(names))
    local visits = tonumber(old[1] or '0') + 1
    local last_step = tonumber(old[2] or '-1')
    local update = {'visits', visits}
    local first_level, first_c, first_g, final_level, final_c, final_g, informative
    for j = 1, n do
      local level = ARGV[pos]
      local c = tonumber(ARGV[pos + 1])
      local g = tonumber(ARGV[pos + 2])
      pos = pos + 3
      local at = 3 + 3 * (j - 1)
      table.insert(update, 'n' .. level)
      table.insert(update, tonumber(old[at] or '0') + 1)
      table.insert(update, 'c' .. level)
      table.insert(update, tonumber(old[at + 1] or '0') + c)
      table.insert(update, 'w' .. level)
      table.insert(update, tonumber(old[at + 2] or '0') + g - c)
      bump('att' .. level, 1)
      if c > 0 then bump('res' .. level, 1) end
      if c > 0 and c < g then informative = level end
      if j == 1 then first_level, first_c, first_g = level, c, g end
      final_level, final_c, final_g = level, c, g
    end
    if visits == 1 then bump('prompts', 1) end
    bump('groups', 1)
    bump('final' .. final_level, 1)
    if final_c == 0 or final_c == final_g then bump('zero_adv', 1) end
    if first_level == '0' then
      bump('nohint_groups', 1)
      bump('nohint_correct', first_c)
      bump('nohint_rollouts', first_g)
      if first_c == 0 then bump('difficult', 1) end
    end
    -- Outcomes can arrive out of order (asynchronous rollouts): only a newer step moves the memory.
    if step >= last_step then
      for _, v in ipairs({'last_step', step, 'last_version', version, 'last_start', first_level,
          'last_final', final_level, 'last_final_c', final_c, 'last_final_g', final_g}) do
        table.insert(update, v)
      end
      if informative then
        table.insert(update, 'last_ok')
        table.insert(update, informative)
      end
    end
    redis.call('HSET', pkey, unpack(update))
  end
end
for name, by in pairs(stats) do
  redis.call('HINCRBY', KEYS[1], name, by)
end
return applied
