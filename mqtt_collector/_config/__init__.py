"""The configuration: the YAML contract as validated models, env substitution, imports.

It imports the collector queue's types and the MQTT side's topic filters, nothing of the daemon.
"""
