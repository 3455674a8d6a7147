-- Read the planning memory of many prompts in one call (ghpo guidance broker).
-- KEYS = prompt hashes. Returns, flattened, per prompt: last_start, last_final, last_final_c,
-- last_final_g, last_step (false where absent). One script instead of one HMGET per prompt: a single
-- reply to parse instead of hundreds, which is most of the cost of a plan batch on the client side.
local out = {}
for i = 1, #KEYS do
  local v = redis.call('HMGET', KEYS[i], 'last_start', 'last_final', 'last_final_c', 'last_final_g', 'last_step')
  for j = 1, 5 do
    out[#out + 1] = v[j]
  end
end
return out
