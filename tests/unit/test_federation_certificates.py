"""The pieces of the authenticated federation that need no Flower process: certificates with the names the
nodes dial, node keys in the formats Flower reads, port ranges, the fleet gateway's path filter and the
command line's refusals (tests/integration/test_federation_security.py runs the whole thing)."""

from __future__ import annotations

import ipaddress
import ssl
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from unlearning.federation.gateway import allowed
from unlearning.federation.security import PortRange, main, make_node_key, make_tls, public_key_bytes


def test_the_certificate_names_every_address_the_nodes_dial(tmp_path: Path) -> None:
    files = make_tls(tmp_path, ["superlink.example.org", "203.0.113.7", "127.0.0.1"])
    cert = x509.load_pem_x509_certificate(files.server_cert.read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["superlink.example.org"]
    assert set(san.get_values_for_type(x509.IPAddress)) == {
        ipaddress.ip_address("203.0.113.7"),
        ipaddress.ip_address("127.0.0.1"),
    }
    ca = x509.load_pem_x509_certificate(files.ca_cert.read_bytes())
    cert.verify_directly_issued_by(ca)  # raises if the CA did not sign it
    assert stat.S_IMODE(files.server_key.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "ca.key").stat().st_mode) == 0o600
    # Python's TLS stack (what the service uses) accepts the pair with this CA
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(files.server_cert, files.server_key)
    ssl.create_default_context(cafile=str(files.ca_cert))
    with pytest.raises(ValueError, match="at least one host"):
        make_tls(tmp_path / "none", [])


def test_node_keys_are_what_flower_reads(tmp_path: Path) -> None:
    key = make_node_key(tmp_path, "member-a")
    private = serialization.load_ssh_private_key(key.private.read_bytes(), password=None)
    assert isinstance(private, ec.EllipticCurvePrivateKey) and private.curve.name == "secp384r1"
    assert key.public.read_text().startswith("ecdsa-sha2-nistp384 ")
    assert stat.S_IMODE(key.private.stat().st_mode) == 0o600
    pem = public_key_bytes(key.public)  # what the SuperLink stores and compares signatures against
    assert serialization.load_pem_public_key(pem).public_numbers() == private.public_key().public_numbers()
    bad = tmp_path / "rsa.pub"
    bad.write_text("not a key\n")
    with pytest.raises(ValueError, match="not an OpenSSH public key"):
        public_key_bytes(bad)


def test_port_ranges() -> None:
    ports = PortRange.parse("29100-29102")
    taken = [ports.take(), ports.take(), ports.take()]
    assert all(29100 <= p <= 29102 for p in taken) and len(set(taken)) == 3
    with pytest.raises(Exception, match="no free port left in 29100-29102"):
        ports.take()
    for text in ("x", "29120-29100", "0-10", "29100-70000"):
        with pytest.raises(ValueError):
            PortRange.parse(text)


def test_the_gateway_lets_only_the_fleet_api_through() -> None:
    assert allowed("/v1/fleet/pull-messages") and allowed("/health")
    for path in ("/v1/control/start-run", "/v1/control/register-node", "/v1/runtime/pull-messages", "/docs"):
        assert not allowed(path), path
    assert not allowed("/v1/fleet/../control/list-runs") and not allowed("/v1/fleet//x")


def test_up_refuses_bad_arguments(capsys: pytest.CaptureFixture[str]) -> None:
    for argv, message in (
        (["up", "--ports", "abc"], "--ports takes FIRST-LAST"),
        (["up", "--nodes", "0"], "--nodes must be at least 1"),
        (["up", "--insecure", "--fleet-host", "0.0.0.0"], "127.0.0.1 only"),
    ):
        with pytest.raises(SystemExit) as exited:
            main(argv)
        assert exited.value.code == 2
        assert message in capsys.readouterr().err


def test_certs_and_node_key_commands(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["certs", "--out", str(tmp_path / "tls"), "--host", "link.example.org"]) == 0
    cert = x509.load_pem_x509_certificate((tmp_path / "tls" / "superlink.pem").read_bytes())
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "link.example.org" in names.get_values_for_type(x509.DNSName)
    assert ipaddress.ip_address("127.0.0.1") in names.get_values_for_type(x509.IPAddress)
    assert main(["node-key", "--out", str(tmp_path / "keys"), "--name", "m1"]) == 0
    assert (tmp_path / "keys" / "m1.pub").read_text().startswith("ecdsa-sha2-nistp384 ")
    with pytest.raises(SystemExit):
        main(["register", str(tmp_path / "keys" / "nope.pub"), "--ca", str(tmp_path / "tls" / "ca.pem")])
    assert "not an OpenSSH public key" in capsys.readouterr().err
