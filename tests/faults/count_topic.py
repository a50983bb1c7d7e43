"""Reads a topic back with confluent-kafka, a standard client, and counts what a consumer would
see: records, distinct event ids, repeats, and keys whose events (by `data.seq`) are out of order.

Usage: count_topic.py BROKERS TOPIC EXPECTED
Reads until EXPECTED distinct event ids were seen, or nothing new came for 15 s, or 5 minutes
passed. Prints one JSON object. Exit 0 if every one of 0..EXPECTED arrived and every key's first
occurrences are in order, 1 otherwise.
"""
import json
import sys
import time

from confluent_kafka import Consumer

brokers, topic, expected = sys.argv[1], sys.argv[2], int(sys.argv[3])
consumer = Consumer({
    "bootstrap.servers": brokers,
    "group.id": f"fault-suite-count-{time.time_ns()}",
    "auto.offset.reset": "earliest",
    "enable.auto.commit": False,
})
consumer.subscribe([topic])
records = 0
seen = set()
last_seq = {}
out_of_order = {}
errors = []
started = time.time()
last_new = time.time()
while len(seen) < expected and time.time() - last_new < 15 and time.time() - started < 300:
    message = consumer.poll(1.0)
    if message is None:
        continue
    if message.error():
        errors.append(str(message.error()))
        continue
    records += 1
    event = json.loads(message.value())
    event_id = event["event_id"]
    if event_id in seen:
        continue
    seen.add(event_id)
    last_new = time.time()
    key = message.key().decode() if message.key() else None
    seq = event["data"]["seq"]
    if key in last_seq and seq < last_seq[key]:
        out_of_order.setdefault(key, []).append([last_seq[key], seq])
    last_seq[key] = max(seq, last_seq.get(key, seq))
consumer.close()
missing = [n for n in range(expected) if f"r1-{n:08}" not in seen]
print(json.dumps({
    "records": records,
    "distinct": len(seen),
    "repeats": records - len(seen),
    "missing": len(missing),
    "first_missing": missing[:20],
    "keys_out_of_order": {k: v[:5] for k, v in out_of_order.items()},
    "errors": errors[:5],
}))
sys.exit(0 if not missing and not out_of_order else 1)
