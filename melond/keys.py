"""Key material melond makes for itself: the SSH key pair for its nodes, a self-signed TLS certificate.

Making keys (`ssh_keypair`, `self_signed_cert`) is apart from writing them (`write_*`), which
creates each private file 0600 and never overwrites anything.
"""
from __future__ import annotations

import datetime as dt
import ipaddress
import os
import socket

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from melond.files import refuse_existing, write_new

SSH_KEY_NAME = "id_ed25519"
CERT_NAME, CERT_KEY_NAME = "melond.crt", "melond.key"
CERT_DAYS = 730  # two years: a self-signed certificate is replaced by hand, so not too often


def ssh_keypair(comment: str) -> tuple[bytes, str]:
    """A new ed25519 key: the private key in OpenSSH format (unencrypted: melond starts unattended)
    and the public key line for authorized_keys."""
    key = ed25519.Ed25519PrivateKey.generate()
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                serialization.NoEncryption())
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    return private, f"{public.decode()} {comment}"


def _san(name: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        return x509.DNSName(name)


def self_signed_cert(names: list[str], now: dt.datetime, days: int = CERT_DAYS) -> tuple[bytes, bytes]:
    """(certificate PEM, private key PEM) for a server known by `names` (host names or addresses).

    ECDSA P-256 rather than ed25519, which some TLS clients still cannot verify. The certificate
    is its own trust anchor: clients point MELON_CA_FILE at it.
    """
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0]),
                         x509.NameAttribute(NameOID.ORGANIZATION_NAME, "melond (self-signed)")])
    public = key.public_key()
    cert = (x509.CertificateBuilder()
            .subject_name(subject).issuer_name(subject).public_key(public)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=days))
            .add_extension(x509.SubjectAlternativeName([_san(n) for n in names]), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_encipherment=False, content_commitment=False,
                                         data_encipherment=False, key_agreement=True, key_cert_sign=False,
                                         crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(public), critical=False)
            .sign(key, hashes.SHA256()))
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


def cert_names(hostnames: tuple[str, ...] | list[str]) -> list[str]:
    """The names a generated certificate covers: those given (else this machine's), and loopback."""
    given = list(hostnames) or list(dict.fromkeys([socket.getfqdn(), socket.gethostname()]))
    return list(dict.fromkeys([*given, "localhost", "127.0.0.1", "::1"]))


def write_ssh_keys(directory: str, comment: str) -> tuple[str, str]:
    """Create DIR/id_ed25519 (0600) and DIR/id_ed25519.pub; the private path and the public line."""
    os.makedirs(directory, mode=0o700, exist_ok=True)
    private_path = os.path.join(os.path.abspath(directory), SSH_KEY_NAME)
    refuse_existing([private_path, private_path + ".pub"])
    private, public = ssh_keypair(comment)
    write_new(private_path, private, 0o600)
    write_new(private_path + ".pub", (public + "\n").encode(), 0o644)
    return private_path, public


def write_cert(directory: str, names: list[str]) -> tuple[str, str]:
    """Create DIR/melond.crt (0644) and DIR/melond.key (0600); their paths."""
    os.makedirs(directory, mode=0o755, exist_ok=True)
    cert_path = os.path.join(os.path.abspath(directory), CERT_NAME)
    key_path = os.path.join(os.path.abspath(directory), CERT_KEY_NAME)
    refuse_existing([cert_path, key_path])
    cert, key = self_signed_cert(names, dt.datetime.now(dt.timezone.utc))
    write_new(key_path, key, 0o600)
    write_new(cert_path, cert, 0o644)
    return cert_path, key_path
