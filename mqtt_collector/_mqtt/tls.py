"""TLS settings for the broker connection, and the SSL context built from them."""

from __future__ import annotations

import ssl

__all__ = ["TLSOptions"]


class TLSOptions:
    """Where the CA and (for mutual TLS) the client certificate and key are."""

    __slots__ = ("ca_file", "cert_file", "insecure", "key_file", "key_password")

    def __init__(
        self,
        *,
        ca_file: str | None = None,
        cert_file: str | None = None,
        key_file: str | None = None,
        key_password: str | None = None,
        insecure: bool = False,
    ) -> None:
        """Hold the paths (and the key's passphrase); files are read when connecting."""
        self.ca_file = ca_file
        self.cert_file = cert_file
        self.key_file = key_file
        self.key_password = key_password
        self.insecure = insecure

    def context(self) -> ssl.SSLContext:
        """Build the SSL context (system CAs when no ``ca_file``)."""
        context = ssl.create_default_context(cafile=self.ca_file)
        if self.cert_file is not None:
            # Never OpenSSL's own prompt on the terminal: without a passphrase, an encrypted
            # key is an error saying which setting is missing.
            password = _no_passphrase if self.key_password is None else self.key_password
            context.load_cert_chain(self.cert_file, self.key_file, password=password)
        if self.insecure:
            context.check_hostname = False
        context.sslsocket_class = _ClosingSSLSocket
        return context


def _no_passphrase() -> str:
    msg = "the TLS key file is encrypted: set broker.tls.key_password or key_password_file"
    raise ssl.SSLError(msg)


class _ClosingSSLSocket(ssl.SSLSocket):
    """Closes itself when the handshake fails (paho-mqtt leaves it open, and it leaks)."""

    def do_handshake(self, block: bool = False) -> None:  # noqa: FBT001, FBT002 - ssl's signature
        """Do the TLS handshake; close the socket if it fails."""
        try:
            super().do_handshake(block)
        except BaseException:
            self.close()
            raise
