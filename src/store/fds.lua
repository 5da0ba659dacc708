#!lua name=fds

-- fds-worker's atomic unit: every operation of one batch on one hash slot.
--
-- KEYS: every key the unit touches (all in one slot); ARGV[1]: the unit as JSON, referring to
-- keys by 0-based index:
--   {"e": [ {"m": marks_key, "b": blacklist_key,
--            "o": [ {"f": "<topic>:<partition>", "n": offset,         -- apply-once identity
--                    "of": "<topic>:<partition>", "on": offset,        -- redrive: the original
--                    "v": [feature, ...],                              -- features
--                    "br": add,                                        -- breach rule entry
--                    "a": add,                                         -- verdict ADD
--                    "d": remove_before_ms,                            -- verdict REMOVE
--                    "k": 1 } ] } ] }                                  -- blacklist lookup
--   feature = {"g": "count"|"sum"|"distinct", "k": key, "p": [tile keys] (distinct),
--              "t": tile, "n": tiles per window, "s": tile_s, "x": expire_at_s of the tile,
--              "c": max tiles kept, "h": threshold, "w": window_s, "a": amount, "m": member}
--   count/sum: `k` is a hash, field = tile index, plus the window's running total (`ws`,
--   `we`, `wt`, `wv`: see write_feature); distinct: `p` are the tiles' HyperLogLogs.
--   A feature's value adds the tiles t - n .. t (see src/plan/tiles.rs).
--   add = {"l": level, "x": expire_at_s (0 = none), "re": reason, "s": source, "t": added_at_ms}
--
-- Reply: per entity, per op: {applied, {counts...}, breached, entry|nil, pttl|nil, error|nil}.
-- An op whose identity is at or below the entity's mark for its partition was applied before
-- (redelivery, client retry): it is skipped and its feature values are read instead. A redrive
-- op ("of"/"on": the dead letter's original identity) whose original offset the entity's list
-- of recent offsets shows applied is skipped too: the reply of that first attempt was lost.

local RANK = { TEMPORARY = 0, FRAUD = 1, STOLEN_CARD = 2, SUSPICIOUS_EMAIL = 3, PERMANENT = 4 }

local function decode_entry(raw)
  if not raw then
    return nil
  end
  local ok, entry = pcall(cjson.decode, raw)
  if ok and type(entry) == 'table' and RANK[entry.threat_level] then
    return entry
  end
  return nil
end

-- Merges `add` into the entry at `key`: never lowers the level, never shortens the expiry;
-- an addition that has already expired is not written (no resurrection). Returns the expiry
-- written (0 = none) or nil if nothing was written.
local function blacklist_add(key, add, now)
  local level, expire_at, reason, source, added_at = add.l, add.x, add.re, add.s, add.t
  local old = decode_entry(redis.call('GET', key))
  if old then
    local old_expire = redis.call('EXPIRETIME', key)
    if RANK[old.threat_level] > RANK[level] then
      level, reason, source = old.threat_level, old.reason, old.source
    end
    local old_added = tonumber(old.added_at) or 0
    if old_added > added_at then
      added_at = old_added
    end
    if old_expire == -1 or expire_at == 0 then
      expire_at = 0
    elseif old_expire > expire_at then
      expire_at = old_expire
    end
  end
  if expire_at ~= 0 and expire_at <= now then
    return nil
  end
  local value = cjson.encode({ threat_level = level, reason = reason, source = source, added_at = added_at })
  if expire_at == 0 then
    redis.call('SET', key, value)
  else
    redis.call('SET', key, value, 'EXAT', expire_at)
  end
  return expire_at
end

local function blacklist_remove(key, before_ms)
  local old = decode_entry(redis.call('GET', key))
  if old and (tonumber(old.added_at) or 0) <= before_ms then
    redis.call('DEL', key)
  end
end

-- What a feature's value counts, for the breach reason.
local UNITS = { count = 'events', sum = 'minor units', distinct = 'distinct' }

-- A count or sum feature's hash holds its tiles (field = tile index) and the running total of
-- the window read at its newest tile: `wt`, the sum of tiles `ws` .. `we` (we - ws = n), and
-- `wv`, tile `we` as it was when the total last counted it. A
-- value at the newest tile is then one HMGET of a few fields instead of n + 1 tiles read and
-- added (61 for a 1 h window of 1 min tiles: measured ~40 us of Redis CPU against ~4). The
-- total is kept exact: a write into ws .. we adds to it, a window moving on subtracts the tiles
-- it leaves, trimming subtracts what it deletes; so it always equals adding the tiles. A value
-- at an older tile (out-of-order events, or their redelivery) adds its own tiles as before.
local WINDOW_FIELDS = 4

-- The sum of tiles first .. last of the hash at `key` (a missing tile adds 0).
local function sum_tiles(key, first, last)
  if last < first then
    return 0
  end
  local fields = {}
  for tile = first, last do
    fields[#fields + 1] = string.format('%d', tile)
  end
  local values = redis.pcall('HMGET', key, unpack(fields))
  local total = 0
  if type(values) == 'table' then
    for _, value in ipairs(values) do
      total = total + (tonumber(value) or 0)
    end
  end
  return total
end

-- The value of a feature over its window: tiles t - n .. t.
local function read_feature(keys, f)
  if f.g == 'distinct' then
    local names = {}
    for i, index in ipairs(f.p) do
      names[i] = keys[index + 1]
    end
    return tonumber(redis.pcall('PFCOUNT', unpack(names))) or 0
  end
  local key = keys[f.k + 1]
  local window = redis.pcall('HMGET', key, 'we', 'wt')
  if type(window) == 'table' and tonumber(window[1]) == f.t and tonumber(window[2]) then
    return tonumber(window[2])
  end
  return sum_tiles(key, f.t - f.n, f.t)
end

-- Adds the event to its tile and returns the feature's value after it. Only a new tile can
-- raise the key's expiry or grow the hash past its bound, so those checks run only then: when
-- the tile was made, the key's expiry was raised to (at least) the tile's own and the hash was
-- trimmed, and neither has been undone since.
local function write_feature(keys, f, now)
  local key = keys[f.k + 1]
  if f.g == 'distinct' then
    -- PFADD answers 0 only for a HyperLogLog that exists (a new one is always altered).
    if redis.call('PFADD', key, f.m) == 1 then
      redis.call('EXPIREAT', key, f.x, 'NX')
    end
    return read_feature(keys, f)
  end
  local tile = string.format('%d', f.t)
  local state = redis.call('HMGET', key, 'ws', 'we', 'wt', 'wv', tile)
  local ws, we, wt, wv = tonumber(state[1]), tonumber(state[2]), tonumber(state[3]), tonumber(state[4])
  local before = tonumber(state[5])
  -- JSON numbers are doubles: amounts are exact up to 2^53 minor units.
  local amount = f.a
  local after = (before or 0) + amount
  local fields = { tile, string.format('%d', after) }
  -- `wv` is tile `we` as this library last wrote it: a tile written by a library without
  -- running totals (a rolling upgrade's older worker) makes it differ, and the total is made
  -- again from the tiles.
  local rebuild = ws == nil or we == nil or wt == nil
  if not rebuild and f.t == we then
    rebuild = before ~= wv
    wt = wt + amount
  elseif not rebuild and f.t > we then
    -- The window moves on to this tile: the tiles it leaves are subtracted; tile `we` and the
    -- tiles between it and this one (empty, unless written without totals) are read along.
    local next_ws = f.t - f.n
    local names, leaving = {}, math.min(we, next_ws - 1)
    for t = ws, leaving do
      names[#names + 1] = string.format('%d', t)
    end
    local from_gap = #names + 1
    for t = math.max(we + 1, next_ws), f.t - 1 do
      names[#names + 1] = string.format('%d', t)
    end
    names[#names + 1] = string.format('%d', we)
    local values = redis.call('HMGET', key, unpack(names))
    rebuild = tonumber(values[#values]) ~= wv
    for i = 1, #values - 1 do
      local value = tonumber(values[i]) or 0
      if i < from_gap then
        wt = wt - value
      else
        wt = wt + value
      end
    end
    wt = wt + after
    ws, we = next_ws, f.t
  elseif not rebuild and f.t >= ws then
    wt = wt + amount
  end
  if rebuild then
    -- No running total yet (a new key), or one that cannot be trusted: from the tiles, this
    -- event included (its tile is written below).
    ws, we = f.t - f.n, f.t
    wt = sum_tiles(key, ws, we - 1) + after
  end
  if f.t == we then
    wv = after
  end
  -- The tile is not there yet: the hash is about to hold one field more.
  if before == nil and redis.call('HLEN', key) + 1 > f.c + WINDOW_FIELDS then
    -- A tile is read until the end of tile + n, plus grace: the same rule as its expiry.
    local grace = f.x - (f.t + f.n + 1) * f.s
    local all = redis.call('HGETALL', key)
    for i = 1, #all, 2 do
      local old = tonumber(all[i])
      if old and (old + f.n + 1) * f.s + grace <= now then
        redis.call('HDEL', key, all[i])
        if old >= ws and old <= we then
          wt = wt - (tonumber(all[i + 1]) or 0)
        end
      end
    end
  end
  fields[#fields + 1] = 'ws'
  fields[#fields + 1] = string.format('%d', ws)
  fields[#fields + 1] = 'we'
  fields[#fields + 1] = string.format('%d', we)
  fields[#fields + 1] = 'wt'
  fields[#fields + 1] = string.format('%d', wt)
  if wv ~= nil then
    fields[#fields + 1] = 'wv'
    fields[#fields + 1] = string.format('%d', wv)
  end
  redis.call('HSET', key, unpack(fields))
  if before == nil then
    -- After the write: a key made just now has no expiry to raise before it exists.
    if redis.call('EXPIRETIME', key) < f.x then
      redis.call('EXPIREAT', key, f.x)
    end
  end
  if f.t == we then
    return wt
  end
  return sum_tiles(key, f.t - f.n, f.t)
end

local function read_features(keys, op)
  local values = {}
  for i, f in ipairs(op.v or {}) do
    values[i] = read_feature(keys, f)
  end
  return values
end

-- Applies one op; returns counts, breached, and the latest expiry it needs its mark to outlive
-- (0 = forever, -1 = nothing written).
local function apply_op(keys, entity, op, now)
  local counts, breach = {}, nil
  local keep_until = -1
  local function keep(expire_at)
    if expire_at == nil then
      return
    end
    if expire_at == 0 or keep_until == 0 then
      keep_until = 0
    elseif expire_at > keep_until then
      keep_until = expire_at
    end
  end
  local blacklist_key = keys[entity.b + 1]
  if op.d then
    blacklist_remove(blacklist_key, op.d)
  end
  if op.a then
    keep(blacklist_add(blacklist_key, op.a, now))
  end
  for i, f in ipairs(op.v or {}) do
    local value
    if f.x <= now then
      -- Too late for this tile: writing would create data that has already expired.
      value = read_feature(keys, f)
    else
      value = write_feature(keys, f, now)
      keep(f.x)
    end
    counts[i] = value
    if f.h > 0 and value > f.h and breach == nil then
      breach = string.format('velocity: %d %s in %ds window > %d', value, UNITS[f.g], f.w, f.h)
    end
  end
  local breached = 0
  if breach and op.br then
    op.br.re = breach
    local expire_at = blacklist_add(blacklist_key, op.br, now)
    if expire_at then
      keep(expire_at)
      breached = 1
    end
  end
  return counts, breached, keep_until
end

-- A mark field's value: the offsets applied last, newest first, each followed by a comma
-- ("812,799,731,"): the newest is the mark, and up to RECENT of them say which offsets were
-- applied — what a redrive asks about an event whose first attempt's outcome was never seen.
-- A value without the trailing comma (written before the list existed) is its mark alone.
local RECENT = 8

local function parse_mark(raw)
  local list = {}
  if not raw then
    return { list = list, known_from = -1 }
  end
  for n in string.gmatch(raw, '(-?%d+)') do
    list[#list + 1] = tonumber(n)
  end
  local known_from
  if string.sub(raw, -1) == ',' and #list < RECENT then
    known_from = -1 -- every offset applied since the field was created is listed
  else
    known_from = list[#list] or -1
  end
  return { list = list, known_from = known_from }
end

local function mark_of(m)
  return m.list[1] or -1
end

local function push_mark(m, n)
  table.insert(m.list, 1, n)
  if #m.list > RECENT then
    m.list[#m.list] = nil
    m.known_from = m.list[#m.list]
  end
end

local function format_mark(m)
  local parts = {}
  for i, n in ipairs(m.list) do
    parts[i] = string.format('%d', n)
  end
  return table.concat(parts, ',') .. ','
end

-- Whether offset n was applied under field m: true, false, or nil (older than the list knows).
local function was_applied(m, n)
  for _, applied in ipairs(m.list) do
    if applied == n then
      return true
    end
  end
  if n < m.known_from then
    return nil
  end
  return false
end

local function apply(keys, args)
  local unit = cjson.decode(args[1])
  local now = tonumber(redis.call('TIME')[1])
  local reply, lookups = {}, {}
  for entity_index, entity in ipairs(unit.e) do
    local marks_key = keys[entity.m + 1]
    local marks, dirty = {}, {}
    local function mark_field(field)
      local m = marks[field]
      if m == nil then
        m = parse_mark(redis.call('HGET', marks_key, field))
        marks[field] = m
      end
      return m
    end
    local keep_until = -1
    local results = {}
    for op_index, op in ipairs(entity.o) do
      local fresh = false
      if op.f then
        fresh = op.n > mark_of(mark_field(op.f))
        -- A redrive op (its own identity the dead letter's) whose original the entity did
        -- apply: its first attempt wrote and lost its reply. Marked done, not applied again.
        if fresh and op.of and was_applied(mark_field(op.of), op.on) then
          fresh = false
          push_mark(marks[op.f], op.n)
          dirty[op.f] = true
        end
      end
      local result
      if fresh then
        local ok, counts, breached, keep = pcall(apply_op, keys, entity, op, now)
        if ok then
          result = { 1, counts, breached, false, false, false }
          if keep == 0 or keep_until == 0 then
            keep_until = 0
          elseif keep > keep_until then
            keep_until = keep
          end
        else
          -- A write failed (e.g. WRONGTYPE on a foreign key). Earlier writes of this op stay,
          -- so the op still counts as applied: a retry must not repeat them.
          local message = type(counts) == 'table' and counts.err or tostring(counts)
          result = { 1, {}, 0, false, false, message }
        end
        push_mark(marks[op.f], op.n)
        dirty[op.f] = true
      else
        result = { 0, read_features(keys, op), 0, false, false, false }
      end
      results[op_index] = result
      if op.k == 1 then
        lookups[#lookups + 1] = { result, keys[entity.b + 1] }
      end
    end
    local fields = {}
    for field in pairs(dirty) do
      fields[#fields + 1] = field
      fields[#fields + 1] = format_mark(marks[field])
    end
    if #fields > 0 then
      if keep_until == -1 then
        -- Only reads or removals: the mark need not outlive anything, keep it a day.
        keep_until = now + 86400
      end
      local previous = redis.call('EXPIRETIME', marks_key)
      redis.call('HSET', marks_key, unpack(fields))
      if keep_until == 0 then
        redis.call('PERSIST', marks_key)
      elseif keep_until > 0 and previous ~= -1 and keep_until > previous then
        redis.call('EXPIREAT', marks_key, keep_until)
      end
    end
    reply[entity_index] = results
  end
  -- Reads last, so a transaction sees every verdict and breach of its batch.
  for _, lookup in ipairs(lookups) do
    local raw = redis.pcall('GET', lookup[2])
    if type(raw) == 'string' then
      lookup[1][4] = raw
      lookup[1][5] = redis.call('PTTL', lookup[2])
    end
  end
  return reply
end

redis.register_function('fds_apply_v1', apply)
