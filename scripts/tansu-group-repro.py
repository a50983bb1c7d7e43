"""tansu 0.6's consumer groups with plain confluent-kafka: three members of one group on a topic of
three partitions, one killed after 12 s. Prints every assignment and revocation with the time.

Seen on tansu 0.6.0 (memory engine): the group never settles. With two or three live members it
revokes and re-assigns every ~3 s (the heartbeat interval), leaving a partition unassigned for
~3 s of each cycle, and the survivors of the kill go on churning the same way. Under the Kafka
protocol a group whose members do not change settles after one rebalance. This is why
crates/cli/tests/scale_out.rs is ignored.

Usage: BROKER=127.0.0.1:9092 python3 scripts/tansu-group-repro.py
"""
import os
import sys, time, subprocess
from confluent_kafka import Consumer
from confluent_kafka.admin import AdminClient, NewTopic
B = os.environ.get("BROKER", "127.0.0.1:9092")
if len(sys.argv) > 1:
    name, g, topic = sys.argv[1], sys.argv[2], sys.argv[3]
    t0 = time.time()
    def on_assign(c, parts): print(name, "%.1f" % (time.time()-t0), "assigned", sorted(p.partition for p in parts), flush=True)
    def on_revoke(c, parts): print(name, "%.1f" % (time.time()-t0), "revoked", sorted(p.partition for p in parts), flush=True)
    c = Consumer({"bootstrap.servers": B, "group.id": g, "session.timeout.ms": 6000, "auto.offset.reset": "earliest"})
    c.subscribe([topic], on_assign=on_assign, on_revoke=on_revoke)
    end = time.time() + float(sys.argv[4])
    while time.time() < end: c.poll(0.2)
    sys.exit(0)
topic = "grp3-%d" % int(time.time()); g = "g3-%d" % int(time.time())
adm = AdminClient({"bootstrap.servers": B})
adm.create_topics([NewTopic(topic, 3, 1)])[topic].result()
procs = [subprocess.Popen([sys.executable, __file__, "m%d" % i, g, topic, "40"]) for i in range(3)]
time.sleep(12)
print("killing m1", flush=True)
procs[1].kill()
for p in (procs[0], procs[2]): p.wait()
