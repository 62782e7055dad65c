"""`--tls`: the mock serves HTTPS with a self-signed certificate it makes when it starts.

The certificate names 127.0.0.1, ::1 and localhost, and the --host the mock listens on when that is
an address or a name (not a wildcard such as 0.0.0.0). Nobody vouches for it, so a client connects
only when it skips verification (loadtest's --insecure), or when it is given this certificate as its
trust anchor, as which it can serve: it is its own CA. The key is an ECDSA P-256 key, made in
milliseconds; the certificate and key are written to a temporary folder for `ssl` to load, and
removed as soon as they are loaded: nothing outlives the start of the mock.
"""

from __future__ import annotations

import datetime
import ipaddress
import ssl
import tempfile
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

NAMES = ("localhost",)
ADDRESSES = ("127.0.0.1", "::1")
# Longer than any run: a soak of days still finds it valid.
_VALID = datetime.timedelta(days=365)
# Before now, so a client whose clock is a little behind the mock's accepts it too.
_BACKDATE = datetime.timedelta(hours=1)


def server_context(host: str) -> ssl.SSLContext:
    """A server-side TLS context with a new certificate for loopback and `host`."""
    key = ec.generate_private_key(ec.SECP256R1())
    certificate = _certificate(key, host)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    with tempfile.TemporaryDirectory(prefix="loadtest-mock-tls-") as folder:
        cert_path, key_path = Path(folder, "cert.pem"), Path(folder, "key.pem")
        cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
        key_path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        context.load_cert_chain(cert_path, key_path)
    return context


def subject_names(host: str) -> list[x509.GeneralName]:
    """What the certificate is for: loopback by name and address, and `host` unless it is a wildcard."""
    names: list[x509.GeneralName] = [x509.DNSName(name) for name in NAMES]
    addresses = [ipaddress.ip_address(address) for address in ADDRESSES]
    host = host.strip("[]")
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        if host and host not in NAMES:
            names.append(x509.DNSName(host))
    else:
        if not address.is_unspecified and address not in addresses:
            addresses.append(address)
    return names + [x509.IPAddress(address) for address in addresses]


def _certificate(key: ec.EllipticCurvePrivateKey, host: str) -> x509.Certificate:
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "loadtest mock")])
    now = datetime.datetime.now(datetime.UTC)
    public = key.public_key()
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _BACKDATE)
        .not_valid_after(now + _VALID)
        .add_extension(x509.SubjectAlternativeName(subject_names(host)), critical=False)
        # Its own CA, so a client may trust exactly this certificate (strict verification asks the
        # anchor for these extensions).
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(public), critical=False)
        .sign(key, hashes.SHA256())
    )
