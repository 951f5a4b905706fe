"""The deployments in examples/, each run as written against a real Mosquitto."""
