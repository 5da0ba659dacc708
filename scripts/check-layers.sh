#!/usr/bin/env bash
# The import rule of src/lib.rs ("Which way imports go"): no module of the product uses one of
# a layer below it in the table (a later stage of the flow, or what runs the flow). Doc
# comments are not imports. Prints each offending line; exits 1 if there is any.
set -euo pipefail
cd "$(dirname "$0")/.."

found=0
# forbid FILES... -- MODULES...: none of FILES may name crate::<module> for these modules.
forbid() {
  local files=() modules=()
  while [ "$1" != "--" ]; do files+=("$1"); shift; done
  shift
  modules=("$@")
  local pattern
  pattern="crate::($(IFS='|'; echo "${modules[*]}"))\\b"
  if grep -rnE "$pattern" "${files[@]}" | grep -vE '^[^:]+:[0-9]+:\s*//[!/]'; then
    found=1
  fi
}

above_flow=(pipeline monitor http redrive replay generate cli)
forbid src/event.rs src/slot src/config src/metrics src/retry.rs -- source codec plan store sink "${above_flow[@]}"
forbid src/source -- codec plan store sink "${above_flow[@]}"
forbid src/codec -- plan store sink "${above_flow[@]}"
forbid src/plan -- store sink "${above_flow[@]}"
forbid src/store -- sink "${above_flow[@]}"
forbid src/sink -- "${above_flow[@]}"
forbid src/pipeline -- monitor http redrive replay generate cli
forbid src/monitor src/http.rs -- redrive replay generate cli
forbid src/redrive.rs src/replay src/generate -- cli

if [ "$found" -ne 0 ]; then
  echo "check-layers: the imports above go against the data flow (see src/lib.rs)" >&2
  exit 1
fi
echo "check-layers: ok"
