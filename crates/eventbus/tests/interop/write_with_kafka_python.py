"""Writes seed-shaped EventSchema JSON with kafka-python, keyed by entity id, as a producer
outside this project would. Usage: write_with_kafka_python.py BROKERS TOPIC COUNT
"""
import json
import sys
import uuid

from kafka import KafkaProducer

brokers, topic, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
producer = KafkaProducer(bootstrap_servers=brokers, acks="all", linger_ms=0, batch_size=0)
for n in range(count):
    event = {
        "event_id": str(uuid.uuid4()),
        "event_type": "transaction_created",
        "timestamp": "2024-01-01T12:00:00Z",
        "entity_type": "transaction",
        "entity_id": f"txn_{n}",
        "data": {"transaction_type": "deposit", "amount": f"{n}.50", "currency": "USD", "seq": n},
        "metadata": {"correlation_id": f"corr_{n}"},
    }
    producer.send(topic, key=event["entity_id"].encode(), value=json.dumps(event).encode()).get(timeout=30)
producer.flush()
producer.close()
