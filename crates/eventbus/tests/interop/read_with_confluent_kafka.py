"""Reads every message of a topic with confluent-kafka and prints one JSON line per message.

Usage: read_with_confluent_kafka.py BROKERS TOPIC COUNT
"""
import json
import sys
import time

from confluent_kafka import Consumer

brokers, topic, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
consumer = Consumer({
    "bootstrap.servers": brokers,
    "group.id": f"interop-{time.time_ns()}",
    "auto.offset.reset": "earliest",
    "enable.auto.commit": False,
})
consumer.subscribe([topic])
seen = 0
deadline = time.time() + 60
while seen < count and time.time() < deadline:
    message = consumer.poll(1.0)
    if message is None:
        continue
    if message.error():
        print(f"error: {message.error()}", file=sys.stderr)
        continue
    headers = {k: v.decode() for k, v in (message.headers() or [])}
    print(json.dumps({
        "partition": message.partition(),
        "key": message.key().decode() if message.key() else None,
        "value": json.loads(message.value()),
        "headers": headers,
    }), flush=True)
    seen += 1
consumer.close()
sys.exit(0 if seen == count else 1)
