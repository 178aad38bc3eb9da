"""The few Kafka operations the harness needs, over either Python client (env KAFKA_CLIENT:
`confluent` for confluent-kafka, the default, or `kafka-python`). Both were checked against tansu
0.6.0: see the "Streaming ingest and freshness" section of BENCHMARKS.md."""
import os
import time

CLIENT = os.environ.get("KAFKA_CLIENT", "confluent")


def create_topic(brokers, topic, partitions):
    if CLIENT == "kafka-python":
        from kafka.admin import KafkaAdminClient, NewTopic
        admin = KafkaAdminClient(bootstrap_servers=brokers)
        admin.create_topics([NewTopic(topic, partitions, 1)])
        admin.close()
        return
    from confluent_kafka.admin import AdminClient, NewTopic
    admin = AdminClient({"bootstrap.servers": brokers})  # must outlive its futures
    for f in admin.create_topics([NewTopic(topic, partitions, 1)]).values():
        f.result(timeout=30)


def end_offsets(brokers, topic, partitions):
    """{partition: end offset (the next offset to be written)}."""
    if CLIENT == "kafka-python":
        from kafka import KafkaConsumer, TopicPartition
        c = KafkaConsumer(bootstrap_servers=brokers)
        ends = c.end_offsets([TopicPartition(topic, p) for p in range(partitions)])
        c.close()
        return {tp.partition: off for tp, off in ends.items()}
    from confluent_kafka import Consumer, TopicPartition
    c = Consumer({"bootstrap.servers": brokers, "group.id": "bench-offsets"})
    ends = {p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=30)[1] for p in range(partitions)}
    c.close()
    return ends


class Producer:
    """Records keyed by user_id, no compression, acks from the leader, no idempotence (tansu has
    no transactions, and the idempotent producer's InitProducerId is not needed here)."""

    def __init__(self, brokers, topic, linger_ms=2):
        self.topic = topic
        if CLIENT == "kafka-python":
            from kafka import KafkaProducer
            self.p = KafkaProducer(bootstrap_servers=brokers, acks=1, linger_ms=linger_ms,
                                   compression_type=None, enable_idempotence=False)
        else:
            from confluent_kafka import Producer as P
            self.p = P({"bootstrap.servers": brokers, "acks": 1, "linger.ms": linger_ms,
                        "compression.type": "none", "enable.idempotence": False,
                        "queue.buffering.max.messages": 500_000})

    def send(self, key, value):
        if CLIENT == "kafka-python":
            self.p.send(self.topic, key=key, value=value)
            return
        while True:
            try:
                self.p.produce(self.topic, key=key, value=value)
                return
            except BufferError:  # local queue full: let deliveries drain it
                self.p.poll(0.005)

    def poll(self):
        if CLIENT != "kafka-python":
            self.p.poll(0)

    def flush(self, timeout=120):
        if CLIENT == "kafka-python":
            self.p.flush(timeout=timeout)
            return
        left = self.p.flush(timeout)
        if left:
            raise RuntimeError(f"{left} records not delivered after {timeout} s")


def wait_for_port(host, port, timeout=30):
    import socket
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection((host, port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"nothing listens on {host}:{port} after {timeout} s")
