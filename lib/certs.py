"""Cluster certificates and the TLS contexts built from them.

Trust model: ``gnt-cluster init`` makes one self-signed cluster CA
(pathutils.cluster_ca_file(), certificate and key in one PEM file).  Every node
gets its own key and a certificate signed by that CA
(pathutils.node_cert_file()), used both as the node daemon's server
certificate and as the client certificate the master presents when it calls
a node daemon.  A node daemon therefore accepts exactly the clients holding a
certificate signed by this cluster's CA, and the master accepts exactly the
node daemons holding one; nodes are addressed by IP, so no host name check.

Only the CA *certificate* is needed to verify peers; the CA key is needed to
sign certificates for new nodes (``ca_certificate_pem`` extracts the part to
hand out to nodes that must not sign).  RAPI uses a separate self-signed
certificate that clients may pin (``generate_self_signed``).

Everything is done with ``cryptography``; nothing shells out to openssl.
All writers replace their file atomically with mode 0600 and are safe to
rerun (they overwrite).
"""

import datetime
import hashlib
import ipaddress
import os
import ssl

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from corral import errors
from corral.utils import io

KEY_BITS = 2048
VALIDITY_DAYS = 5 * 365
# Nodes' clocks may lag the machine that signed; certificates start a day early.
_BACKDATE = datetime.timedelta(days=1)


def _new_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=KEY_BITS)


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _validity() -> tuple[datetime.datetime, datetime.datetime]:
    now = datetime.datetime.now(datetime.timezone.utc)
    return now - _BACKDATE, now + datetime.timedelta(days=VALIDITY_DAYS)


def _san(name: str) -> x509.SubjectAlternativeName:
    try:
        return x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(name))])
    except ValueError:
        return x509.SubjectAlternativeName([x509.DNSName(name)])


def _write_pem(path: str, key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey,
               cert: x509.Certificate) -> None:
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    pem += cert.public_bytes(serialization.Encoding.PEM)
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    io.write_file_atomic(path, pem, mode=0o600)


def _read_bytes(path: str) -> bytes:
    try:
        with open(path, "rb") as fh:
            return fh.read()
    except OSError as err:
        raise errors.CertificateError("Cannot read certificate file %s: %s"
                                      % (path, err.strerror)) from err


def load_certificate(path: str) -> x509.Certificate:
    """The first certificate in the PEM file ``path``."""
    try:
        certs = x509.load_pem_x509_certificates(_read_bytes(path))
    except ValueError as err:
        raise errors.CertificateError("No valid certificate in %s: %s" % (path, err)) from err
    return certs[0]


def _load_key(path: str) -> rsa.RSAPrivateKey:
    try:
        key = serialization.load_pem_private_key(_read_bytes(path), password=None)
    except ValueError as err:
        raise errors.CertificateError("No valid private key in %s: %s" % (path, err)) from err
    if not isinstance(key, rsa.RSAPrivateKey):
        raise errors.CertificateError("Unsupported key type in %s" % path)
    return key


def generate_cluster_ca(path: str, cluster_name: str) -> None:
    """Create the cluster CA (key + self-signed certificate) in ``path``, mode 0600.

    Overwrites an existing CA: every node certificate signed by the old one
    stops being trusted, so only call this at cluster init or on purpose
    (certificate renewal).
    """
    key = _new_key()
    start, end = _validity()
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    # The CA's name must differ from every node's (a node may share the cluster's
    # name on one-node clusters): a certificate whose subject equals its issuer
    # is taken for a self-signed one and fails verification.
    ca_name = _name("Corral cluster CA " + cluster_name)
    cert = (x509.CertificateBuilder()
            .subject_name(ca_name).issuer_name(ca_name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(start).not_valid_after(end)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True,
                                         crl_sign=True, content_commitment=False,
                                         key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, encipher_only=False,
                                         decipher_only=False), critical=True)
            .add_extension(ski, critical=False)
            .sign(key, hashes.SHA256()))
    _write_pem(path, key, cert)


def generate_node_cert(ca_path: str, out_path: str, node_name: str) -> None:
    """Create a key and a CA-signed certificate for ``node_name`` in ``out_path``.

    The certificate is valid for TLS server and client authentication and
    carries ``node_name`` as subject alternative name.  Needs the CA key.
    """
    ca_cert = load_certificate(ca_path)
    ca_key = _load_key(ca_path)
    key = _new_key()
    start, end = _validity()
    cert = (x509.CertificateBuilder()
            .subject_name(_name(node_name)).issuer_name(ca_cert.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(start).not_valid_after(min(end, ca_cert.not_valid_after_utc))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH,
                                                  ExtendedKeyUsageOID.CLIENT_AUTH]),
                           critical=False)
            .add_extension(_san(node_name), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    _write_pem(out_path, key, cert)


def generate_self_signed(path: str, common_name: str) -> None:
    """Create a self-signed server certificate (RAPI) for ``common_name``, mode 0600.

    An ECDSA P-256 key: RAPI closes every connection after one response (as
    Ganeti's does), so each request pays a TLS handshake, and the server's
    signature in it costs a fraction of an RSA-2048 one.
    """
    key = ec.generate_private_key(ec.SECP256R1())
    start, end = _validity()
    cert = (x509.CertificateBuilder()
            .subject_name(_name(common_name)).issuer_name(_name(common_name))
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(start).not_valid_after(end)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]),
                           critical=False)
            .add_extension(_san(common_name), critical=False)
            .sign(key, hashes.SHA256()))
    _write_pem(path, key, cert)


def ca_certificate_pem(ca_path: str) -> str:
    """The CA certificate alone (no key), for nodes that only verify peers."""
    return load_certificate(ca_path).public_bytes(serialization.Encoding.PEM).decode("ascii")


def _load_chain(ctx: ssl.SSLContext, cert_path: str) -> None:
    try:
        ctx.load_cert_chain(cert_path)
    except FileNotFoundError as err:
        raise errors.CertificateError("Certificate file %s does not exist" % cert_path) from err
    except (ssl.SSLError, OSError) as err:
        raise errors.CertificateError("Cannot load certificate and key from %s: %s"
                                      % (cert_path, err)) from err


def _load_ca(ctx: ssl.SSLContext, ca_path: str) -> None:
    try:
        ctx.load_verify_locations(cafile=ca_path)
    except FileNotFoundError as err:
        raise errors.CertificateError("Cluster CA file %s does not exist" % ca_path) from err
    except (ssl.SSLError, OSError) as err:
        raise errors.CertificateError("Cannot load cluster CA from %s: %s"
                                      % (ca_path, err)) from err


def server_ssl_context(cert_path: str, ca_path: str) -> ssl.SSLContext:
    """TLS server context that requires a client certificate signed by the CA."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    _load_chain(ctx, cert_path)
    _load_ca(ctx, ca_path)
    ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


def client_ssl_context(cert_path: str | None, ca_path: str) -> ssl.SSLContext:
    """TLS client context: presents ``cert_path`` and trusts only servers signed by the CA.

    No host name check (peers are addressed by IP).  ``cert_path`` None makes
    a context without client certificate, which node daemons refuse; it
    exists for tests and probes.
    """
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_REQUIRED
    _load_ca(ctx, ca_path)
    if cert_path is not None:
        _load_chain(ctx, cert_path)
    return ctx


def cert_fingerprint(path: str) -> str:
    """SHA-256 of the (first) certificate in ``path``, as ``AB:CD:...`` (openssl style)."""
    der = load_certificate(path).public_bytes(serialization.Encoding.DER)
    digest = hashlib.sha256(der).hexdigest().upper()
    return ":".join(digest[i:i + 2] for i in range(0, len(digest), 2))


def cert_expiry(path: str) -> float:
    """Expiry of the (first) certificate in ``path``, as a Unix timestamp."""
    return load_certificate(path).not_valid_after_utc.timestamp()
