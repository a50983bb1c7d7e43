# Reproduces two failures of tansu 0.6.0's SQLite engine (see README, "The same flow on Kafka")
# with plain confluent-kafka: python3 scripts/tansu-sqlite-repro.py PORT snappy|headers|plain
# (plain = 6000 records without headers, the control). Start the broker on a fresh database:
#   tansu broker --listener-url tcp://127.0.0.1:PORT --advertised-listener-url tcp://127.0.0.1:PORT \
#     --storage-engine sqlite://tansu.db
# Seen with tansu 0.6.0: snappy -> high watermark 5, fetched 0; headers -> 6000 stored, fetched 0 in 30 s;
# plain -> 6000 fetched in 0.5 s. The memory engine serves all three.
import sys, time, uuid
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
port, mode = sys.argv[1], sys.argv[2]
bs, topic = f"127.0.0.1:{port}", "m-" + uuid.uuid4().hex[:8]
admin = AdminClient({"bootstrap.servers": bs}); admin.create_topics([NewTopic(topic, 1, 1)])[topic].result(10)
n = 5 if mode == "snappy" else 6000
p = Producer({"bootstrap.servers": bs, "compression.type": "snappy" if mode == "snappy" else "none"})
for i in range(n):   # ~300 B values; 7 headers per record in 'headers' mode (like CloudEvents ce_*)
    p.produce(topic, value=b'{"seq":%d,"pad":"%s"}' % (i, b"x" * 280),
              headers=[(f"ce_h{j}", str(uuid.uuid4()).encode()) for j in range(7)] if mode == "headers" else None)
    p.poll(0)
p.flush(60)
c = Consumer({"bootstrap.servers": bs, "group.id": uuid.uuid4().hex, "auto.offset.reset": "earliest",
              "socket.timeout.ms": 10000})          # 10 s = our bus's request_timeout_ms
print("high watermark:", c.get_watermark_offsets(TopicPartition(topic, 0), 10)[1])
c.subscribe([topic]); got, t0 = 0, time.time()
while time.time() - t0 < 30 and got < n:
    m = c.poll(0.5); got += m is not None and m.error() is None
print(f"produced {n}, fetched {got} in {time.time() - t0:.1f}s"); c.close()
