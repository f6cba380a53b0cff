#!/bin/bash
# L1 misses per step outside the evicting pass (cachegrind), current build
# usage (from the repository root, after `cargo build --release -p precond-ffi`): bash benches/peers/goals_session24_amd_zen4_optim/l1_misses_per_step.sh
cd "$(dirname "$0")/../../.." && gcc -O2 -Iinclude benches/peers/goals_session24_amd_zen4_optim/cold2.c target/release/libprecond_ffi.a -lm -lpthread -ldl -o /tmp/cold2_cur || exit 1
for cfg in '{"optimizer":"sgd","lr":0.01,"nonfinite":"propagate"}' '{"optimizer":"rmsprop","lr":0.01,"nonfinite":"propagate"}' '{"optimizer":"adam","lr":0.001,"nonfinite":"propagate"}' '{"optimizer":"sgd","lr":0.01}'; do
  for K in 2000 0; do
    RAYON_NUM_THREADS=1 valgrind --tool=cachegrind --cache-sim=yes --cachegrind-out-file=/tmp/cg.d1.$K /tmp/cold2_cur "$cfg" $K > /dev/null 2>&1
  done
  python3 - "$cfg" <<'PY'
import sys, re
def tot(f):
    # totals line: "summary:" with event counts
    ev=None; vals=None
    for l in open(f):
        if l.startswith('events:'): ev=l.split()[1:]
        if l.startswith('summary:'): vals=list(map(int,l.split()[1:]))
    return dict(zip(ev,vals))
def passmiss(f):
    # subtract the pass function's misses: parse fn=pass blocks
    ev=None; cur=None; acc={}
    for l in open(f):
        if l.startswith('events:'): ev=l.split()[1:]
        elif l.startswith('fn='): cur=l[3:].strip()
        elif cur and re.match(r'^\d', l):
            v=list(map(int,l.split()[1:]))
            if 'pass' == cur.split(':')[-1] or cur.endswith(':pass') or cur=='pass':
                for e,x in zip(ev,v): acc[e]=acc.get(e,0)+x
    return acc
a=tot('/tmp/cg.d1.2000'); b=tot('/tmp/cg.d1.0'); p=passmiss('/tmp/cg.d1.2000')
r=(a['D1mr']-b['D1mr']-p.get('D1mr',0))/2000; w=(a['D1mw']-b['D1mw']-p.get('D1mw',0))/2000
print(f"D1 read misses/step {r:.1f}, write misses/step {w:.1f}  {sys.argv[1]}")
PY
done
