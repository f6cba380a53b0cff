#!/bin/bash
# usage (from the repository root, after `cargo build --release -p precond-ffi`): bash benches/peers/goals_session24_amd_zen4_optim/instructions_per_step.sh
# instructions per step (callgrind, 10000 steps minus 0 steps) for the current build, n=16 f32
cd "$(dirname "$0")/../../.." && gcc -O2 -Iinclude benches/peers/goals_session24_amd_zen4_optim/drv.c target/release/libprecond_ffi.a -lm -lpthread -ldl -o /tmp/drvcg || exit 1
for cfg in '{"optimizer":"sgd","lr":0.01,"nonfinite":"propagate"}' '{"optimizer":"rmsprop","lr":0.01,"nonfinite":"propagate"}' '{"optimizer":"adam","lr":0.001,"nonfinite":"propagate"}' '{"optimizer":"sgd","lr":0.01}' '{"optimizer":"adam","lr":0.001}'; do
  a=$(RAYON_NUM_THREADS=1 valgrind --tool=callgrind --callgrind-out-file=/dev/null /tmp/drvcg 16 10000 "$cfg" 2>&1 | grep refs | awk '{gsub(",","",$4); print $4}')
  b=$(RAYON_NUM_THREADS=1 valgrind --tool=callgrind --callgrind-out-file=/dev/null /tmp/drvcg 16 0 "$cfg" 2>&1 | grep refs | awk '{gsub(",","",$4); print $4}')
  echo "$(( (a-b)/10000 )) $cfg"
done
