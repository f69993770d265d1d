#!/bin/bash
# usage: cpu_watch.sh PID OUT : every 0.5 s, total busy ticks of the machine and ticks of PID's process
pid=$1; out=$2; : > $out
while kill -0 $pid 2>/dev/null; do
  read -r _ u n s i w irq sirq st _ < /proc/stat
  own=$(awk '{print $14+$15+$16+$17}' /proc/$pid/stat 2>/dev/null)
  echo "$(date +%s.%N) $((u+n+s+irq+sirq)) $own $n" >> $out
  sleep 0.5
done
