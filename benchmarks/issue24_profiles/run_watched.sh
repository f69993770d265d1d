#!/bin/bash
# usage: run_watched.sh WATCHLOG cmd... : runs cmd (exec'd, so its pid is the python's) under cpu_watch
log=$1; shift
"$@" & pid=$!
"$(dirname "$0")"/cpu_watch.sh $pid $log &
wait $pid; rc=$?
sleep 0.6
exit $rc
