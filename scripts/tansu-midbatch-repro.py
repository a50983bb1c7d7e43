"""tansu 0.6 skips records when a fetch starts inside a record batch.

Produces four records in one batch (linger), then reads the partition from offsets 0, 1 and 2.
Apache Kafka answers a fetch from offset 1 with the batch that holds it, and the client drops
record 0: records 1, 2, 3. tansu 0.6 (memory and SQLite engines) answers with nothing; once a
later batch exists, it answers with that one, so a consumer that resumes from a committed offset
inside a batch never sees the rest of the batch. This is what loses commands in the Kafka runs
of the fault suite and the scale-out tests unless each producer batch holds one record.

Usage: tansu-midbatch-repro.py BROKERS   (a fresh broker; it creates the topic `midbatch`)
"""
import sys
import time

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

brokers = sys.argv[1]
admin = AdminClient({"bootstrap.servers": brokers})
admin.create_topics([NewTopic("midbatch", 1, 1)])["midbatch"].result()
producer = Producer({"bootstrap.servers": brokers, "linger.ms": 100})
for n in range(4):
    producer.produce("midbatch", key=b"k", value=f"record {n}".encode())
producer.flush()
for start in (0, 1, 2):
    consumer = Consumer({"bootstrap.servers": brokers, "group.id": f"midbatch-{start}-{time.time_ns()}"})
    consumer.assign([TopicPartition("midbatch", 0, start)])
    got = []
    began = time.time()
    while time.time() - began < 4 and len(got) < 4 - start:
        message = consumer.poll(0.5)
        if message is not None and not message.error():
            got.append(message.offset())
    consumer.close()
    print(f"from offset {start}: got offsets {got}, expected {list(range(start, 4))}")
