#!/usr/bin/env bash
# What an atomic unit's argument encoding costs inside Redis (BENCHMARKS.md, "Why the
# commands/s target is not met"). Starts one standalone redis-server on a free loopback port,
# loads four functions and times them with redis-benchmark (-P 32 -c 20), all in one run:
#
#   empty/json        FCALL of a function that does nothing, given one unit as JSON (1 argument)
#   decode/json       the same unit decoded with cjson, as fds.lua does
#   empty/positional  a function that does nothing, given the same unit as 24 plain arguments
#   decode/positional the 24 arguments parsed into the same Lua tables (tonumber per field)
#
# and, in a loop inside one call, cjson.decode against cmsgpack.unpack of the same unit.
#
# The unit is a user's transaction op in the shape `store::wire::unit_json` gives it (apply-once
# mark, three velocity windows, the breach rule's entry, a lookup): 227 bytes of JSON, among the
# larger units (`cargo bench --bench hot_path` names the median and p90 unit size). Prints µs per call and what each costs over an
# empty call.
#
#   scripts/unit-encoding-cost.sh [REQUESTS]     (default 300000 per case)
set -euo pipefail
requests="${1:-300000}"
port=""
for candidate in $(seq 17390 17490); do
  if ! (exec 3<>"/dev/tcp/127.0.0.1/$candidate") 2>/dev/null; then
    port=$candidate
    break
  fi
done
[ -n "$port" ] || { echo "no free port in 17390-17490" >&2; exit 1; }
redis-server --bind 127.0.0.1 --port "$port" --save '' --appendonly no --logfile '' \
  >/dev/null 2>&1 &
server=$!
trap 'kill "$server" 2>/dev/null || true' EXIT
until redis-cli -p "$port" ping >/dev/null 2>&1; do sleep 0.1; done

redis-cli -p "$port" FUNCTION LOAD REPLACE "$(cat <<'LUA'
#!lua name=encoding_cost
local function positional(args)
  local i, n, entities = 1, #args, {}
  while i <= n do
    local entity = { m = tonumber(args[i]), b = tonumber(args[i + 1]), o = {} }
    local ops = tonumber(args[i + 2])
    i = i + 3
    for k = 1, ops do
      local flags, op = tonumber(args[i]), {}
      i = i + 1
      if flags % 2 == 1 then
        op.f, op.n = args[i], tonumber(args[i + 1])
        i = i + 2
      end
      local incrs = tonumber(args[i])
      i = i + 1
      op.v = {}
      for j = 1, incrs do
        op.v[j] = { tonumber(args[i]), tonumber(args[i + 1]), tonumber(args[i + 2]), tonumber(args[i + 3]) }
        i = i + 4
      end
      if math.floor(flags / 2) % 2 == 1 then
        op.br = { l = args[i], x = tonumber(args[i + 1]), re = args[i + 2], s = args[i + 3], t = tonumber(args[i + 4]) }
        i = i + 5
      end
      op.k = math.floor(flags / 4) % 2
      entity.o[k] = op
    end
    entities[#entities + 1] = entity
  end
  return { e = entities }
end
redis.register_function('cost_empty', function() return 1 end)
redis.register_function('cost_json', function(_, args) local unit = cjson.decode(args[1]); return #unit.e end)
redis.register_function('cost_positional', function(_, args) local unit = positional(args); return #unit.e end)
-- ARGV[2] decodes of the unit in one call: cjson, or cmsgpack of the same tables.
redis.register_function('cost_loop_json', function(_, args)
  for _ = 1, tonumber(args[2]) do cjson.decode(args[1]) end
  return 1
end)
redis.register_function('cost_loop_msgpack', function(_, args)
  local packed = cmsgpack.pack(cjson.decode(args[1]))
  for _ = 1, tonumber(args[2]) do cmsgpack.unpack(packed) end
  return 1
end)
LUA
)" >/dev/null

json='{"e":[{"m":0,"b":1,"o":[{"f":"transactions:0","n":12345,"v":[[2,1700000100,5,60],[3,1700003700,0,3600],[4,1700090000,0,86400]],"br":{"l":"TEMPORARY","x":1700003600,"re":"","s":"fds-worker/velocity","t":1700000000000},"k":1}]}]}'
# entity: marks key, blacklist key, ops; op: flags (1 mark, 2 breach, 4 lookup), mark field and
# offset, number of INCRs and 4 fields each, the breach entry's 5 fields.
positional=(0 1 1 7 transactions:0 12345 3 2 1700000100 5 60 3 1700003700 0 3600 4 1700090000 0 86400
  TEMPORARY 1700003600 "" fds-worker/velocity 1700000000000)
[ "$(redis-cli -p "$port" FCALL cost_json 0 "$json")" = 1 ]
[ "$(redis-cli -p "$port" FCALL cost_positional 0 "${positional[@]}")" = 1 ]

per_call_us() {
  redis-benchmark -p "$port" -n "$requests" -P 32 -c 20 -q "$@" | tr '\r' '\n' |
    awk '/requests per second/ { for (i = 1; i <= NF; i++) if ($(i + 1) == "requests") printf "%.2f", 1e6 / $i }'
}
empty_json=$(per_call_us FCALL cost_empty 0 "$json")
decode_json=$(per_call_us FCALL cost_json 0 "$json")
empty_positional=$(per_call_us FCALL cost_empty 0 "${positional[@]}")
decode_positional=$(per_call_us FCALL cost_positional 0 "${positional[@]}")
incr=$(per_call_us INCR counter)
loop_us() {
  local start end
  start=$(date +%s%N)
  redis-cli -p "$port" FCALL "$1" 0 "$json" "$requests" >/dev/null
  end=$(date +%s%N)
  awk "BEGIN { printf \"%.2f\", ($end - $start) / 1000 / $requests }"
}
loop_json=$(loop_us cost_loop_json)
loop_msgpack=$(loop_us cost_loop_msgpack)

echo "| case | µs per call | over the empty 1-argument call |"
echo "|---|---|---|"
echo "| plain INCR (baseline) | $incr | |"
echo "| FCALL, nothing done, unit as 1 JSON argument | $empty_json | |"
echo "| FCALL, cjson.decode of the unit | $decode_json | $(awk "BEGIN { printf \"%.2f\", $decode_json - $empty_json }") |"
echo "| FCALL, nothing done, unit as 24 arguments | $empty_positional | |"
echo "| FCALL, 24 arguments parsed into the same tables | $decode_positional | $(awk "BEGIN { printf \"%.2f\", $decode_positional - $empty_json }") |"
echo
echo "Decoding alone, $requests times in one FCALL: cjson $loop_json µs, cmsgpack $loop_msgpack µs per unit."
