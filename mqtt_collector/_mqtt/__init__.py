"""The MQTT side: the transport interface, a folder per client library, filters, templates.

It imports nothing of the collector queue, the configuration or the daemon.
"""
