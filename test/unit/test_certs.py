"""Cluster CA, node certificates and the TLS contexts, with real sockets on 127.0.0.1."""

import os
import socket
import ssl
import stat
import threading
import time

import pytest
from cryptography import x509

from corral import certs, errors

# The module shares its certificates: keep its tests on one xdist worker.
pytestmark = pytest.mark.xdist_group("certs-pki")


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    """Two clusters' CAs, a node certificate of each, and a RAPI certificate."""
    d = tmp_path_factory.mktemp("pki")
    paths = {k: str(d / (k + ".pem")) for k in ("ca", "node", "node2", "other_ca",
                                                   "other_node", "rapi")}
    certs.generate_cluster_ca(paths["ca"], "cluster.example.com")
    certs.generate_node_cert(paths["ca"], paths["node"], "node1.example.com")
    certs.generate_node_cert(paths["ca"], paths["node2"], "192.0.2.7")
    certs.generate_cluster_ca(paths["other_ca"], "other.example.com")
    certs.generate_node_cert(paths["other_ca"], paths["other_node"], "node1.example.com")
    certs.generate_self_signed(paths["rapi"], "cluster.example.com")
    return paths


def test_files_are_private_and_hold_key_and_cert(pki):
    for path in pki.values():
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        text = open(path).read()
        assert "PRIVATE KEY" in text and "BEGIN CERTIFICATE" in text


def test_node_cert_contents(pki):
    ca = certs.load_certificate(pki["ca"])
    node = certs.load_certificate(pki["node"])
    assert node.issuer == ca.subject
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    san = node.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["node1.example.com"]
    ip_san = certs.load_certificate(pki["node2"]).extensions.get_extension_for_class(
        x509.SubjectAlternativeName).value
    assert [str(a) for a in ip_san.get_values_for_type(x509.IPAddress)] == ["192.0.2.7"]
    eku = node.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert {o.dotted_string for o in eku} == {"1.3.6.1.5.5.7.3.1", "1.3.6.1.5.5.7.3.2"}


def test_fingerprint_and_expiry(pki):
    fp = certs.cert_fingerprint(pki["node"])
    assert len(fp.split(":")) == 32 and fp == fp.upper()
    assert fp != certs.cert_fingerprint(pki["node2"])
    assert time.time() + 4 * 365 * 86400 < certs.cert_expiry(pki["node"])
    assert certs.cert_expiry(pki["node"]) < time.time() + 6 * 365 * 86400


def test_ca_certificate_pem_has_no_key(pki):
    pem = certs.ca_certificate_pem(pki["ca"])
    assert "BEGIN CERTIFICATE" in pem and "PRIVATE KEY" not in pem


def test_missing_files_raise_certificate_error(tmp_path, pki):
    with pytest.raises(errors.CertificateError, match="does not exist"):
        certs.server_ssl_context(str(tmp_path / "nope.pem"), pki["ca"])
    with pytest.raises(errors.CertificateError, match="does not exist"):
        certs.client_ssl_context(pki["node"], str(tmp_path / "nope.pem"))
    with pytest.raises(errors.CertificateError):
        certs.cert_fingerprint(str(tmp_path / "nope.pem"))


def _handshake(server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext) -> tuple[bool, bool]:
    """(server accepted, client got a reply) for one TLS exchange over 127.0.0.1."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    outcome = {"server_ok": False}

    def serve():
        conn, _ = listener.accept()
        conn.settimeout(10)
        try:
            with server_ctx.wrap_socket(conn, server_side=True) as tls:
                tls.recv(4)
                tls.sendall(b"pong")
                outcome["server_ok"] = True
        except (ssl.SSLError, OSError):
            pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    client_ok = False
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
            with client_ctx.wrap_socket(raw) as tls:
                tls.sendall(b"ping")
                client_ok = tls.recv(4) == b"pong"
    except (ssl.SSLError, OSError):
        pass
    finally:
        thread.join(10)
        listener.close()
    return outcome["server_ok"], client_ok


def test_same_cluster_client_accepted(pki):
    server = certs.server_ssl_context(pki["node"], pki["ca"])
    client = certs.client_ssl_context(pki["node2"], pki["ca"])
    assert _handshake(server, client) == (True, True)


def test_client_from_another_ca_refused(pki):
    server = certs.server_ssl_context(pki["node"], pki["ca"])
    client = certs.client_ssl_context(pki["other_node"], pki["other_ca"])
    client.verify_mode = ssl.CERT_NONE  # so only the server's check can refuse
    assert _handshake(server, client) == (False, False)


def test_client_without_certificate_refused(pki):
    server = certs.server_ssl_context(pki["node"], pki["ca"])
    client = certs.client_ssl_context(None, pki["ca"])
    assert _handshake(server, client) == (False, False)


def test_server_from_another_ca_refused_by_client(pki):
    server = certs.server_ssl_context(pki["other_node"], pki["other_ca"])
    server.verify_mode = ssl.CERT_NONE
    client = certs.client_ssl_context(pki["node"], pki["ca"])
    assert _handshake(server, client) == (False, False)


def test_rapi_self_signed_verifies_against_itself(pki):
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(pki["rapi"])
    client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client.check_hostname = False
    client.load_verify_locations(pki["rapi"])
    assert _handshake(server, client) == (True, True)
