"""The collector queue: collectors, payloads, results, routing, the consumer pool.

It imports nothing of MQTT, the configuration or the daemon.
"""
