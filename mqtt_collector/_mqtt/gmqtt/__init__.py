"""The gmqtt transport, with the one module that reaches into gmqtt's private parts."""
