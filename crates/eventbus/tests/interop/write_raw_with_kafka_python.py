"""Writes two bad messages with kafka-python: text that is not JSON, and a 4 KB JSON value.

Usage: write_raw_with_kafka_python.py BROKERS TOPIC
"""
import json
import sys

from kafka import KafkaProducer

brokers, topic = sys.argv[1], sys.argv[2]
producer = KafkaProducer(bootstrap_servers=brokers, acks="all", linger_ms=0, batch_size=0)
producer.send(topic, key=b"bad-1", value=b"this is not json").get(timeout=30)
large = {"event_type": "transaction_created", "entity_id": "txn_big", "data": {"blob": "x" * 4096}}
producer.send(topic, key=b"bad-2", value=json.dumps(large).encode()).get(timeout=30)
producer.flush()
producer.close()
