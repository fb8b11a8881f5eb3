#!/bin/bash
# Time from exec to "AGW is running" for `agw run` on the quickstart config, in network namespace
# leadb (create it: ip netns add leadb; ip netns exec leadb ip link set lo up). Usage: bench/startup.sh CHECKOUT
# A/B: farm-bench -n 7 --vs "bench/startup.sh OLD_CHECKOUT" -- bench/startup.sh NEW_CHECKOUT
cd $1
ip netns exec leadb node_modules/.bin/node cli/src/main.ts run -c examples/quickstart/config.yaml --demo-upstream 127.0.0.1:9080 > /tmp/startup.$$.log 2>&1 &
pid=$!
for i in $(seq 1 300); do grep -q "AGW is running" /tmp/startup.$$.log && break; sleep 0.02; done
kill $pid; wait $pid 2>/dev/null; rm -f /tmp/startup.$$.log
