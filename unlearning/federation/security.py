"""An authenticated, least-disclosing federation: TLS, SuperNode authentication, Fleet apart from Control.

Flower 1.41 serves its Fleet API (what SuperNodes call), its Control API (start, list and stop runs, register
nodes) and the ServerApp runtime API as protobuf over HTTP on **one** port; its ``--control-api-address`` and
``--fleet-api-address`` flags are deprecated and no longer bind anything over HTTP, and open-source Flower
has no credential on the Control API. So a member who can reach the SuperLink's port could also register
nodes and read every run's job spec. Here:

- the SuperLink listens on 127.0.0.1 only (Control and runtime API: the service and the ServerApps on the
  same machine);
- a :mod:`fleet gateway <unlearning.federation.gateway>` listens on the address members dial and forwards
  ``/v1/fleet/*`` and ``/health`` alone, over TLS at both ends (anything else: 404);
- ``--enable-supernode-auth``: a SuperNode signs every Fleet request with its own EC key, and the SuperLink
  accepts only keys the operator registered beforehand through the Control API (``flwr supernode register``
  or :func:`register_node_key`); a node with an unknown key is refused at start-up. Registering needs access
  to the Control API, i.e. to the SuperLink's machine: the operator registers a member's public key, which
  the member sends out of band.

:func:`make_tls` makes a private CA and the SuperLink's certificate (with the names and addresses the nodes
dial as subject alternative names); :func:`make_node_key` a SuperNode's key pair in the OpenSSH format that
``flower-supernode --auth-supernode-private-key`` and ``flwr supernode register`` read. ``SecureFederation``
is ``LocalFederation`` with all of it, ports from one range; ``python -m unlearning.federation.deployment up``
uses it by default.
"""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import os
import socket
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from unlearning.federation.deployment import (
    ConfigValue,
    ControlClient,
    FederationError,
    LocalFederation,
    _Process,
    node_config_toml,
)


@dataclass(frozen=True)
class TlsFiles:
    """PEM files: the CA every party trusts, and the SuperLink's (and gateway's) certificate and key."""

    ca_cert: Path
    server_cert: Path
    server_key: Path


@dataclass(frozen=True)
class NodeKey:
    """A SuperNode's key pair (OpenSSH format): the private key stays on the node, the public key is
    registered at the SuperLink."""

    private: Path
    public: Path


def _write_private(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def _san(hosts: Iterable[str]) -> list[Any]:
    from cryptography import x509

    names: list[Any] = []
    for host in dict.fromkeys(hosts):
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    return names


def make_tls(directory: Path, hosts: Sequence[str], *, days: int = 825) -> TlsFiles:
    """A private CA (``ca.pem``, its key ``ca.key``) and a server certificate (``superlink.pem``,
    ``superlink.key``) signed by it, valid for every name or IP address in ``hosts`` (the subject alternative
    names: the addresses SuperNodes dial, and 127.0.0.1 for the service and the ServerApps). Keys are
    ECDSA P-384, written with mode 0600. Existing files are overwritten."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    if not hosts:
        raise ValueError("make_tls needs at least one host name or address for the certificate")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP384R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Commons federation CA")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA384())
    )
    key = ec.generate_private_key(ec.SECP384R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName(_san(hosts)), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA384())
    )
    pem = serialization.Encoding.PEM
    unencrypted = serialization.NoEncryption()
    files = TlsFiles(directory / "ca.pem", directory / "superlink.pem", directory / "superlink.key")
    _write_private(
        directory / "ca.key",
        ca_key.private_bytes(pem, serialization.PrivateFormat.PKCS8, unencrypted),
    )
    files.ca_cert.write_bytes(ca_cert.public_bytes(pem))
    files.server_cert.write_bytes(cert.public_bytes(pem))
    _write_private(files.server_key, key.private_bytes(pem, serialization.PrivateFormat.PKCS8, unencrypted))
    return files


def make_node_key(directory: Path, name: str = "node") -> NodeKey:
    """A SuperNode's ECDSA P-384 key pair: ``<name>.key`` (OpenSSH private key, mode 0600, for
    ``flower-supernode --auth-supernode-private-key``) and ``<name>.pub`` (``ecdsa-sha2-nistp384 ...``, for
    ``flwr supernode register``). Existing files are overwritten."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    directory = Path(directory)
    key = ec.generate_private_key(ec.SECP384R1())
    files = NodeKey(directory / f"{name}.key", directory / f"{name}.pub")
    _write_private(
        files.private,
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
        ),
    )
    files.public.write_bytes(
        key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
        + b"\n"
    )
    return files


def public_key_bytes(public_key: Path) -> bytes:
    """An OpenSSH EC public key file as the SuperLink stores it (PEM SubjectPublicKeyInfo), the same
    conversion ``flwr supernode register`` does; anything but a NIST-curve EC key raises ``ValueError``."""
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    try:
        key = serialization.load_ssh_public_key(Path(public_key).read_bytes())
    except (OSError, ValueError, UnsupportedAlgorithm) as exc:
        raise ValueError(f"{public_key}: not an OpenSSH public key ({exc})") from exc
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name not in (
        "secp256r1",
        "secp384r1",
        "secp521r1",
    ):
        raise ValueError(f"{public_key}: a SuperNode key must be an EC key on a NIST curve (P-256/384/521)")
    return key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def register_node_key(control: ControlClient, public_key: Path, name: str | None = None) -> int:
    """Register a SuperNode's public key at the SuperLink (Control API ``register-node``, what ``flwr
    supernode register`` does); returns the node id the SuperNode will have, across its restarts."""
    from flwr.proto.control_pb2 import RegisterNodeRequest, RegisterNodeResponse

    request = RegisterNodeRequest(public_key=public_key_bytes(public_key), name=name)
    reply = control._call("register-node", request, RegisterNodeResponse())
    if not reply.node_id:
        raise FederationError(f"the SuperLink did not register {public_key}")
    return int(reply.node_id)


class PortRange:
    """Ports for every process a federation starts, taken in order from ``first..last`` (inclusive),
    skipping ports that are in use."""

    def __init__(self, first: int, last: int, host: str = "127.0.0.1") -> None:
        if not 1 <= first <= last <= 65535:
            raise ValueError(f"not a port range: {first}-{last}")
        self.first, self.last, self.host = first, last, host
        self._next = first

    @classmethod
    def parse(cls, text: str, host: str = "127.0.0.1") -> PortRange:
        """``"29100-29120"``."""
        first, sep, last = text.partition("-")
        try:
            return cls(int(first), int(last if sep else first), host)
        except ValueError as exc:
            raise ValueError(f"--ports takes FIRST-LAST, e.g. 29100-29120 (got {text!r}): {exc}") from exc

    def take(self, host: str | None = None) -> int:
        while self._next <= self.last:
            port = self._next
            self._next += 1
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
                try:
                    sock.bind((host or self.host, port))
                except OSError:
                    continue
            return port
        raise FederationError(f"no free port left in {self.first}-{self.last}")


class SecureFederation(LocalFederation):
    """``LocalFederation`` with TLS, SuperNode authentication and the Fleet API apart from the Control API.

    The SuperLink binds ``host`` (127.0.0.1); a fleet gateway binds ``fleet_host`` and is the only address
    the SuperNodes dial (``node_superlink`` overrides it). Each SuperNode gets its own key pair under
    ``workdir/keys`` (kept across restarts of the federation, so a node keeps its identity: Flower gives a
    registered key the same node id), registered at the SuperLink before the node starts. Every port comes
    from ``ports`` (a ``PortRange``; default: any free port). ``tls`` defaults to a fresh CA and certificate
    under ``workdir/tls`` for ``fleet_host``, ``san``, ``127.0.0.1`` and ``localhost``."""

    def __init__(
        self,
        workdir: Path,
        nodes: Sequence[Mapping[str, ConfigValue]],
        *,
        fleet_host: str = "127.0.0.1",
        ports: PortRange | None = None,
        tls: TlsFiles | None = None,
        san: Sequence[str] = (),
        **kwargs: Any,
    ) -> None:
        self.ports = ports
        host = str(kwargs.get("host", "127.0.0.1"))
        if ports is not None and kwargs.get("port") is None:
            kwargs["port"] = ports.take(host)
        super().__init__(workdir, nodes, **kwargs)
        self.fleet_host = fleet_host
        self.fleet_port = ports.take(fleet_host) if ports is not None else _free_port(fleet_host)
        self.tls = tls or make_tls(self.workdir / "tls", [fleet_host, *san, "127.0.0.1", "localhost"])
        self.node_keys: list[NodeKey] = []

    @property
    def fleet_address(self) -> str:
        return f"{self.fleet_host}:{self.fleet_port}"

    def control_client(self) -> ControlClient:
        return ControlClient(self.address, insecure=False, root_certificates=str(self.tls.ca_cert))

    def runtime_port(self) -> int:
        return self.ports.take(self.host) if self.ports is not None else super().runtime_port()

    def superlink_argv(self) -> list[str]:
        argv = [a for a in super().superlink_argv() if a != "--insecure"]
        return [
            *argv,
            "--ssl-ca-certfile",
            str(self.tls.ca_cert),
            "--ssl-certfile",
            str(self.tls.server_cert),
            "--ssl-keyfile",
            str(self.tls.server_key),
            "--enable-supernode-auth",
        ]

    def runtime_tls_argv(self) -> list[str]:
        return ["--root-certificates", str(self.tls.ca_cert)]

    def supernode_argv(self, index: int, node_config_file: Path, runtime_port: int) -> list[str]:
        argv = [a for a in super().supernode_argv(index, node_config_file, runtime_port) if a != "--insecure"]
        argv[argv.index("--superlink") + 1] = self.node_superlink or self.fleet_address
        return [
            *argv,
            "--root-certificates",
            str(self.tls.ca_cert),
            "--auth-supernode-private-key",
            str(self.node_keys[index].private),
        ]

    def gateway_argv(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "unlearning.federation.gateway",
            "--listen",
            self.fleet_address,
            "--upstream",
            self.address,
            "--ca",
            str(self.tls.ca_cert),
            "--cert",
            str(self.tls.server_cert),
            "--key",
            str(self.tls.server_key),
        ]

    def node_key(self, name: str) -> NodeKey:
        """The key pair ``workdir/keys/<name>.key|.pub``, made on first use."""
        keys = self.workdir / "keys"
        key = NodeKey(keys / f"{name}.key", keys / f"{name}.pub")
        return key if key.private.exists() and key.public.exists() else make_node_key(keys, name)

    def before_nodes(self, control: ControlClient) -> None:
        """Start the fleet gateway, then make (or reuse) and register every node's key."""
        gateway = self._spawn("fleet-gateway", self.gateway_argv())
        self.wait_for_port(gateway, self.fleet_host, self.fleet_port)
        self.node_keys = []
        for index in range(len(self.nodes)):
            key = self.node_key(f"supernode-{index}")
            self.node_keys.append(key)
            register_node_key(control, key.public, name=f"supernode-{index}")

    def start_extra_node(self, config: Mapping[str, ConfigValue], *, register: bool) -> _Process:
        """Start one more SuperNode after ``start()``, with a fresh key that is registered only if
        ``register``; the caller watches it (an unregistered one is refused and exits)."""
        index = len(self.node_keys)
        name = f"extra-{index}"
        key = make_node_key(self.workdir / "keys", name)
        if register:
            with self.control_client() as control:
                register_node_key(control, key.public, name=name)
        self.node_keys.append(key)
        self.nodes.append(dict(config))
        config_file = self.workdir / f"{name}.toml"
        config_file.write_text(node_config_toml(config))
        return self._spawn(name, self.supernode_argv(index, config_file, self.runtime_port()))

    def wait_for_port(self, proc: _Process, host: str, port: int, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            self._check_alive(proc)
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
                sock.settimeout(1.0)
                if sock.connect_ex((host, port)) == 0:
                    return
            if time.monotonic() > deadline:
                raise FederationError(f"{proc.name} not listening on {host}:{port}:\n{proc.log_tail()}")
            time.sleep(0.1)


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


class _RangedFederation(LocalFederation):
    """``up --insecure``: the plain federation (loopback only), its ports from a range."""

    def __init__(self, *args: Any, ports: PortRange, **kwargs: Any) -> None:
        self.ports = ports
        super().__init__(*args, **kwargs)

    def runtime_port(self) -> int:
        return self.ports.take(self.host)


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def node_data_paths(data_root: Path, nodes: int, manifest_dir: Path | None = None) -> list[Path]:
    """Each node's data directory under ``data_root``: the dataset manifest's node paths in partition order (an
    imported dataset keeps the members' folder names, ``commons model init --data``), ``node-<i>`` beyond them
    or without a manifest. The manifest is ``data_root``'s, or ``manifest_dir``'s where the nodes' folders
    live apart from the published manifest (``unlearning.api.publish_dataset``, the demo's layout)."""
    from unlearning.data import node_dirs

    named: list[Path] = []
    if manifest_dir is not None:
        if not (manifest_dir / "manifest.json").is_file():
            raise ValueError(f"--manifest: {manifest_dir} holds no manifest.json")
        named = node_dirs(manifest_dir, node_root=data_root)
    elif (data_root / "manifest.json").is_file():
        named = node_dirs(data_root)
    return [named[i] if i < len(named) else data_root / f"node-{i}" for i in range(nodes)]


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m unlearning.federation.deployment up | certs | node-key | register``."""
    import argparse
    import signal
    import threading

    parser = argparse.ArgumentParser(
        prog="python -m unlearning.federation.deployment",
        description="Run a Flower federation on this machine; make its certificates and node keys.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser(
        "up",
        help="start a SuperLink (TLS, SuperNode authentication, Control API on 127.0.0.1), its fleet "
        "gateway and N SuperNodes; Ctrl-C stops them all",
    )
    up.add_argument("--workdir", type=Path, default=Path(".commons/federation"))
    up.add_argument("--nodes", type=int, default=3)
    up.add_argument(
        "--ports",
        default="9093-9120",
        help="FIRST-LAST: every process's port comes from this range, in order: the SuperLink (Control "
        "API, 127.0.0.1) first, then the fleet gateway, then each SuperNode's runtime API",
    )
    up.add_argument(
        "--fleet-host",
        default="127.0.0.1",
        help="the address the fleet gateway binds (what members dial; 0.0.0.0 for every interface)",
    )
    up.add_argument(
        "--san",
        action="append",
        default=[],
        help="another name or address in the certificate (the host name members dial); repeatable",
    )
    up.add_argument(
        "--tls-dir", type=Path, default=None, help="use ca.pem, superlink.pem, superlink.key here"
    )
    up.add_argument("--database", default=None, help="SuperLink --database (default: in memory)")
    up.add_argument(
        "--insecure",
        action="store_true",
        help="plain HTTP, no node authentication, no gateway (127.0.0.1 only; for debugging)",
    )
    up.add_argument(
        "--data-root",
        type=Path,
        default=None,
        help="a dataset directory: node i gets node config data-path=<data-root>/<the manifest's node i> "
        "(<data-root>/node-<i> without a manifest)",
    )
    up.add_argument(
        "--manifest",
        type=Path,
        default=None,
        help="with --data-root holding only the nodes' folders (the demo's COMMONS_DATA_DIR/nodes): the "
        "published dataset directory whose manifest names them (node i gets <data-root>/<its node i>)",
    )
    up.add_argument(
        "--artifact-root",
        type=Path,
        default=None,
        help="the artifact store as the SuperLink's ServerApps see it (COMMONS_SERVERAPP_ARTIFACT_ROOT); "
        "needed to run jobs (they carry no paths)",
    )
    certs = sub.add_parser("certs", help="make a CA and the SuperLink's certificate")
    certs.add_argument("--out", type=Path, required=True)
    certs.add_argument(
        "--host",
        action="append",
        required=True,
        help="a name or address members dial (first: the certificate's common name); repeatable. "
        "127.0.0.1 and localhost are added for the service and the ServerApps",
    )
    certs.add_argument("--days", type=int, default=825)
    key = sub.add_parser("node-key", help="make a SuperNode's key pair (on the node's machine)")
    key.add_argument("--out", type=Path, required=True)
    key.add_argument("--name", default="node")
    reg = sub.add_parser("register", help="register a SuperNode's public key (on the SuperLink's machine)")
    reg.add_argument("public_key", type=Path)
    reg.add_argument("--superlink", default="127.0.0.1:9093", help="the Control API (127.0.0.1:PORT)")
    reg.add_argument("--ca", type=Path, required=True, help="the CA certificate (ca.pem)")
    reg.add_argument("--name", default=None)
    args = parser.parse_args(argv)

    if args.command == "certs":
        files = make_tls(args.out, [*args.host, "127.0.0.1", "localhost"], days=args.days)
        print(f"CA: {files.ca_cert}\ncertificate: {files.server_cert}\nkey: {files.server_key}")
        return 0
    if args.command == "node-key":
        pair = make_node_key(args.out, args.name)
        print(f"private key (stays here): {pair.private}\npublic key (send to the operator): {pair.public}")
        return 0
    if args.command == "register":
        try:
            with ControlClient(args.superlink, insecure=False, root_certificates=str(args.ca)) as control:
                node_id = register_node_key(control, args.public_key, name=args.name)
        except (ValueError, FederationError) as exc:
            parser.exit(2, f"error: {exc}\n")
        print(f"registered {args.public_key} as node {node_id}")
        return 0

    try:
        ports = PortRange.parse(args.ports)
    except ValueError as exc:
        parser.error(str(exc))
    if args.nodes < 1:
        parser.error("--nodes must be at least 1")
    if args.insecure and not _loopback(args.fleet_host):
        parser.error("--insecure is for a federation on 127.0.0.1 only (no TLS, anyone could join)")
    nodes: list[dict[str, ConfigValue]] = []
    if args.manifest is not None and args.data_root is None:
        parser.error("--manifest names the nodes of --data-root: give --data-root too")
    try:
        paths = (
            node_data_paths(args.data_root, args.nodes, args.manifest) if args.data_root is not None else []
        )
    except ValueError as exc:
        parser.error(str(exc))
    for i in range(args.nodes):
        node: dict[str, ConfigValue] = {"partition-id": i, "num-partitions": args.nodes}
        if paths:
            node["data-path"] = str(paths[i].resolve())
        nodes.append(node)
    common: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": ports.take("127.0.0.1"),
        "artifact_root": args.artifact_root,
        "database": args.database,
    }
    federation: LocalFederation
    if args.insecure:
        federation = _RangedFederation(args.workdir, nodes, ports=ports, **common)
    else:
        tls = None
        if args.tls_dir is not None:
            tls = TlsFiles(
                args.tls_dir / "ca.pem", args.tls_dir / "superlink.pem", args.tls_dir / "superlink.key"
            )
        federation = SecureFederation(
            args.workdir, nodes, fleet_host=args.fleet_host, ports=ports, tls=tls, san=args.san, **common
        )
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with federation:
        if isinstance(federation, SecureFederation):
            print(
                f"SuperLink (Control API) at {federation.address}, TLS, CA {federation.tls.ca_cert}\n"
                f"fleet gateway (what SuperNodes dial) at {federation.fleet_address}\n"
                f"{args.nodes} SuperNodes online, keys registered from {args.workdir / 'keys'}; logs in "
                f"{args.workdir}\nfor the service: COMMONS_FLOWER_SUPERLINK={federation.address} "
                f"COMMONS_FLOWER_ROOT_CERTIFICATES={federation.tls.ca_cert.resolve()}",
                flush=True,
            )
        else:
            print(
                f"SuperLink at {federation.address} (plain HTTP); {args.nodes} SuperNodes online; logs in "
                f"{args.workdir}",
                flush=True,
            )
        with contextlib.suppress(KeyboardInterrupt):
            stop.wait()
    return 0
