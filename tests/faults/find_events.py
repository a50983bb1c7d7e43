"""Finds events by id in a topic with confluent-kafka, for a failing fault test's message: where
each one is (partition, offset), and each partition's watermarks.

Usage: find_events.py BROKERS TOPIC GROUP ID...
"""
import json
import sys
import time

from confluent_kafka import Consumer, TopicPartition

brokers, topic, group, ids = sys.argv[1], sys.argv[2], sys.argv[3], set(sys.argv[4:])
reader = Consumer({"bootstrap.servers": brokers, "group.id": f"find-{time.time_ns()}",
                   "auto.offset.reset": "earliest", "enable.auto.commit": False})
partitions = reader.list_topics(topic, timeout=10).topics[topic].partitions
marks = {p: reader.get_watermark_offsets(TopicPartition(topic, p), timeout=10) for p in partitions}
committed = Consumer({"bootstrap.servers": brokers, "group.id": group}).committed(
    [TopicPartition(topic, p) for p in partitions], timeout=10)
reader.assign([TopicPartition(topic, p, 0) for p in partitions])
found, records, last = {}, 0, time.time()
while time.time() - last < 5 and len(found) < len(ids):
    message = reader.poll(0.5)
    if message is None or message.error():
        continue
    records += 1
    last = time.time()
    event_id = json.loads(message.value()).get("event_id")
    if event_id in ids:
        found[event_id] = [message.partition(), message.offset()]
print(json.dumps({
    "found": found,
    "missing": sorted(ids - set(found)),
    "records_read": records,
    "watermarks": {p: list(m) for p, m in marks.items()},
    "committed": {c.partition: c.offset for c in committed},
}))
