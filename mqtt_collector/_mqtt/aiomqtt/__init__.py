"""The aiomqtt transport, with the one module that reaches into aiomqtt's private parts."""
