"""TLS on the TCP listener and the keys melond makes (`--gen-cert`, `--init-keys`): real processes, real TLS."""
from __future__ import annotations

import datetime as dt
import json
import os
import socket
import ssl
import stat
import subprocess
from pathlib import Path

import asyncssh
from cryptography import x509

from conftest import BIN, Melon, free_port
from melond.keys import self_signed_cert


def _melond(*args: str, umask: int | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "melond"), *args], capture_output=True, text=True, timeout=60,
                          preexec_fn=(lambda: os.umask(umask)) if umask is not None else None)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_init_keys_writes_an_ed25519_pair_asyncssh_loads_and_never_overwrites(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    r = _melond("--init-keys", str(keys), umask=0)  # even a careless umask leaves the key private
    assert r.returncode == 0, r.stderr
    private, public = keys / "id_ed25519", keys / "id_ed25519.pub"
    assert _mode(private) == 0o600 and _mode(public) == 0o644 and _mode(keys) == 0o700
    assert private.read_text().startswith("-----BEGIN OPENSSH PRIVATE KEY-----")
    key = asyncssh.read_private_key(str(private))
    assert key.get_algorithm() == "ssh-ed25519"
    line = public.read_text().strip()
    assert line.split()[:2] == key.export_public_key("openssh").decode().split()[:2]
    assert line in r.stdout and "authorized_keys" in r.stdout and f'identity_file = "{private}"' in r.stdout
    before = private.read_bytes()
    again = _melond("--init-keys", str(keys))
    assert again.returncode == 1 and "refusing to overwrite" in again.stderr and str(private) in again.stderr
    assert private.read_bytes() == before
    public.unlink()  # a half pair is still refused: the private key is never replaced
    assert _melond("--init-keys", str(keys)).returncode == 1 and private.read_bytes() == before


def test_init_keys_defaults_to_the_state_dir(tmp_path: Path) -> None:
    r = _melond("--state-dir", str(tmp_path / "state"), "--init-keys")
    assert r.returncode == 0, r.stderr
    assert _mode(tmp_path / "state" / "keys" / "id_ed25519") == 0o600


def test_a_self_signed_certificate_names_hosts_and_addresses() -> None:
    now = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
    cert_pem, key_pem = self_signed_cert(["login1.example", "10.0.0.1"], now, days=10)
    cert = x509.load_pem_x509_certificate(cert_pem)
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["login1.example"]
    assert [str(a) for a in san.get_values_for_type(x509.IPAddress)] == ["10.0.0.1"]
    assert cert.issuer == cert.subject and cert.not_valid_after_utc == now + dt.timedelta(days=10)
    assert b"PRIVATE KEY" in key_pem


def test_tls_listener_from_the_inventory_with_a_generated_certificate(short_tmp: Path) -> None:
    gen = _melond("--gen-cert", str(short_tmp / "tls"), "--hostname", "localhost", umask=0)
    assert gen.returncode == 0, gen.stderr
    cert, key = short_tmp / "tls" / "melond.crt", short_tmp / "tls" / "melond.key"
    assert _mode(key) == 0o600 and _mode(cert) == 0o644 and "MELON_CA_FILE" in gen.stdout
    again = _melond("--gen-cert", str(short_tmp / "tls"))
    assert again.returncode == 1 and "refusing to overwrite" in again.stderr
    port = free_port()
    melon = Melon(short_tmp, inventory='[tls]\ncert = "tls/melond.crt"\nkey = "tls/melond.key"\n')
    melon.start_args = ["--port", str(port)]
    melon.start()
    try:
        token = melon.token()
        url = f"https://localhost:{port}"
        tls = melon.env(MELON_API=url, MELON_TOKEN=token, MELON_CA_FILE=str(cert))
        jid = int(melon.run("mbatch", "--parsable", "-H", "--wrap", "true", env=tls).stdout)
        assert [j["id"] for j in json.loads(melon.run("mqueue", "--json", env=tls).stdout)] == [jid]
        melon.run("mcancel", str(jid), env=tls)
        unverified = melon.run("mqueue", env={**tls, "MELON_CA_FILE": ""}, check=False)
        assert unverified.returncode == 1 and "certificate verify failed" in unverified.stderr
        assert "MELON_CA_FILE" in unverified.stderr
        plain = melon.run("mqueue", env={**tls, "MELON_API": f"http://localhost:{port}"}, check=False)
        assert plain.returncode == 1 and "use https://" in plain.stderr
        no_token = melon.run("mqueue", env={**tls, "MELON_TOKEN": ""}, check=False)
        assert no_token.returncode == 1 and "needs a token" in no_token.stderr
        # the listener really speaks TLS with the generated certificate
        context = ssl.create_default_context(cafile=str(cert))
        with socket.create_connection(("127.0.0.1", port)) as raw, \
                context.wrap_socket(raw, server_hostname="localhost") as conn:
            served = conn.getpeercert(binary_form=True)
            assert conn.version() in ("TLSv1.2", "TLSv1.3")
        assert served == ssl.PEM_cert_to_DER_cert(cert.read_text())
    finally:
        melon.cleanup()


def test_melond_refuses_a_loose_key_a_missing_file_and_tls_without_a_port(tmp_path: Path) -> None:
    assert _melond("--gen-cert", str(tmp_path / "tls")).returncode == 0
    cert, key = tmp_path / "tls" / "melond.crt", tmp_path / "tls" / "melond.key"
    os.chmod(key, 0o644)
    loose = _melond("--state-dir", str(tmp_path / "s"), "--port", str(free_port()), "--tls-cert", str(cert),
                    "--tls-key", str(key))
    assert loose.returncode == 1 and f"chmod 600 {key}" in loose.stderr
    os.chmod(key, 0o600)
    no_port = _melond("--state-dir", str(tmp_path / "s"), "--tls-cert", str(cert), "--tls-key", str(key))
    assert no_port.returncode == 1 and "add --port" in no_port.stderr
    half = _melond("--state-dir", str(tmp_path / "s"), "--tls-cert", str(cert))
    assert half.returncode != 0 and "both --tls-cert and --tls-key" in half.stderr
    inventory = tmp_path / "inv.toml"
    inventory.write_text('[tls]\ncert = "tls/melond.crt"\nkey = "tls/nope.key"\n')
    missing = _melond("--state-dir", str(tmp_path / "s"), "--inventory", str(inventory), "--port", "1")
    assert missing.returncode == 1 and "tls.key: no such file 'tls/nope.key'" in missing.stderr
    other = tmp_path / "other.key"
    other.write_bytes(self_signed_cert(["x"], dt.datetime.now(dt.timezone.utc))[1])
    os.chmod(other, 0o600)
    mismatched = _melond("--state-dir", str(tmp_path / "s"), "--port", str(free_port()), "--tls-cert", str(cert),
                         "--tls-key", str(other))
    assert mismatched.returncode == 1 and "cannot use certificate" in mismatched.stderr
    assert not (tmp_path / "s").exists()  # refused before touching the state dir
