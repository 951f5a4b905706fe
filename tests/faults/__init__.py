"""Fault-injection tests: a real Mosquitto, the daemon as a subprocess, and faults on purpose."""
