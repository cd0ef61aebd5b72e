#!/bin/sh
# jsz.sh MONITOR_PORT: NATS JetStream streams/consumers (from /jsz?streams=true&consumers=true), one line per stream
curl -s "http://127.0.0.1:${1:-8221}/jsz?streams=true&consumers=true" | python3 -c '
import json,sys; d=json.load(sys.stdin)
for a in d.get("account_details",[]):
  for s in a.get("stream_detail",[]):
    st=s["state"]; print(s["name"], "leader", s.get("cluster",{}).get("leader"), "msgs",st["messages"], "bytes", st["bytes"], "first_seq",st["first_seq"],"last_seq",st["last_seq"], "consumers:", [(c["name"][:8], "pending",c.get("num_pending"), "ack_pending",c.get("num_ack_pending"), "redelivered", c.get("num_redelivered")) for c in s.get("consumer_detail",[])])'
