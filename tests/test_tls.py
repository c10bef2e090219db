"""lab.tls: the lab's CA and certificates on disk, and the two contexts, over real sockets."""

from __future__ import annotations

import ipaddress
import os
import socket
import ssl
import stat
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from lab import tls
from lab.addresses import EMULATED_NETWORK
from lab.errors import ConfigError
from lab.netpath.system import slot_addresses

REQUEST = b"ping"
ANSWER = b"pong"


@pytest.fixture(scope="session")
def session_tls_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One folder for the session: an RSA 4096 key takes a second or more to make."""
    return tmp_path_factory.mktemp("tls")


@pytest.fixture
def tls_home(session_tls_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("LAB_TLS_DIR", str(session_tls_dir))
    return session_tls_dir


class OneShotServer:
    """A plain-socket TLS server answering each connection's first read, then shutting TLS
    down cleanly (OpenSSL drops a session from its cache after an unclean close)."""

    def __init__(self, context: ssl.SSLContext, connections: int) -> None:
        self.context = context
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self.listener.getsockname()[1]
        self.errors: list[BaseException] = []
        self.thread = threading.Thread(target=self._serve, args=(connections,), daemon=True)
        self.thread.start()

    def _serve(self, connections: int) -> None:
        self.listener.settimeout(10)
        for _ in range(connections):
            try:
                accepted, _ = self.listener.accept()
                with self.context.wrap_socket(accepted, server_side=True) as connection:
                    connection.recv(len(REQUEST))
                    connection.sendall(ANSWER)
                    connection.unwrap()
            except (OSError, ssl.SSLError) as error:
                self.errors.append(error)

    def close(self) -> None:
        self.thread.join(10)
        self.listener.close()


def exchange(port: int, context: ssl.SSLContext, *, host: str = "127.0.0.1",
             session: ssl.SSLSession | None = None) -> tuple[ssl.SSLSocket, bytes]:
    raw = socket.create_connection(("127.0.0.1", port), timeout=10)
    connection = context.wrap_socket(raw, server_hostname=host, session=session)
    connection.sendall(REQUEST)
    answer = connection.recv(len(ANSWER))
    return connection, answer


@pytest.fixture
def serve() -> Iterator[list[OneShotServer]]:
    servers: list[OneShotServer] = []
    yield servers
    for server in servers:
        server.close()


def start(servers: list[OneShotServer], context: ssl.SSLContext, connections: int = 1) -> int:
    server = OneShotServer(context, connections)
    servers.append(server)
    return server.port


# --- files -----------------------------------------------------------------------------------

def test_ca_is_made_once_in_a_private_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "cache" / "tls"
    monkeypatch.setenv("LAB_TLS_DIR", str(home))
    ca = tls.lab_ca_file()
    assert ca.is_relative_to(home)
    assert stat.S_IMODE(home.stat().st_mode) == 0o700
    key = ca.parent / "ca.key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    certificate = x509.load_pem_x509_certificate(ca.read_bytes())
    assert certificate.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert tls.lab_ca_file().read_bytes() == ca.read_bytes()  # kept, not made again


def test_cache_folder_follows_xdg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LAB_TLS_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert tls.tls_dir() == tmp_path / "latency-lab" / "tls"


def test_processes_making_the_ca_at_once_agree(tmp_path: Path) -> None:
    environment = {**os.environ, "LAB_TLS_DIR": str(tmp_path)}
    script = ("from lab import tls; import hashlib; c, k = tls.server_certificate(); "
              "print(hashlib.sha256(tls.lab_ca_file().read_bytes() + c.read_bytes() "
              "+ k.read_bytes()).hexdigest())")
    processes = [subprocess.Popen([sys.executable, "-c", script], env=environment, stdout=subprocess.PIPE,
                                  text=True) for _ in range(4)]
    digests = {process.communicate(timeout=60)[0].strip() for process in processes}
    assert all(process.returncode == 0 for process in processes)
    assert len(digests) == 1
    assert not [path for path in tmp_path.rglob(".*")]  # no staging folder left behind


def test_unwritable_cache_folder_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    monkeypatch.setenv("LAB_TLS_DIR", str(blocker / "tls"))
    with pytest.raises(ConfigError, match=r"^tls: cannot keep the lab's certificates in .*LAB_TLS_DIR"):
        tls.lab_ca_file()


@pytest.mark.parametrize("key_type", tls.KEY_TYPES)
def test_server_certificate_of_each_key_type(tls_home: Path, key_type: str) -> None:
    chain, key = tls.server_certificate(key_type)
    assert tls.certificate_key_type(chain) == key_type
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    private = serialization.load_pem_private_key(key.read_bytes(), password=None)
    certificate = x509.load_pem_x509_certificate(chain.read_bytes())
    assert certificate.public_key() == private.public_key()
    ca = x509.load_pem_x509_certificate(tls.lab_ca_file().read_bytes())
    certificate.verify_directly_issued_by(ca)
    names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == ["localhost"]
    addresses = {str(address) for address in names.get_values_for_type(x509.IPAddress)}
    assert {"127.0.0.1", "::1", "198.19.0.2", "198.19.1.2"} <= addresses
    assert tls.server_certificate(key_type) == (chain, key)


def test_certificate_names_the_paths_server_addresses() -> None:
    """lab.tls may not import lab.netpath: the addresses it writes must agree by themselves."""
    assert tls._EMULATED_NETWORK == EMULATED_NETWORK
    expected = [ipaddress.IPv4Address(slot_addresses(slot)[1])
                for slot in range(tls.PATH_SLOTS_IN_CERTIFICATE)]
    assert tls.path_server_addresses() == expected


# --- contexts over real sockets --------------------------------------------------------------

@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "198.19.0.2"])
def test_client_trusts_the_lab_server_by_name(tls_home: Path, serve: list[OneShotServer], host: str) -> None:
    port = start(serve, tls.server_context())
    connection, answer = exchange(port, tls.client_context(), host=host)
    assert answer == ANSWER
    connection.close()


def test_client_refuses_a_name_the_certificate_lacks(tls_home: Path, serve: list[OneShotServer]) -> None:
    port = start(serve, tls.server_context())
    with pytest.raises(ssl.SSLCertVerificationError, match="mismatch"):
        exchange(port, tls.client_context(), host="example.com")


def test_client_refuses_a_stranger_unless_insecure(tls_home: Path, serve: list[OneShotServer],
                                                   tmp_path: Path) -> None:
    stranger = trustme.CA().issue_cert("127.0.0.1")
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    stranger.cert_chain_pems[0].write_to_path(str(cert_file))
    stranger.private_key_pem.write_to_path(str(key_file))
    port = start(serve, tls.server_context(cert_file=cert_file, key_file=key_file), connections=2)
    with pytest.raises(ssl.SSLCertVerificationError):
        exchange(port, tls.client_context())
    connection, answer = exchange(port, tls.client_context(insecure=True))
    assert answer == ANSWER
    connection.close()


def test_client_with_ca_file_trusts_that_ca_alone(tls_home: Path, serve: list[OneShotServer],
                                                  tmp_path: Path) -> None:
    other = trustme.CA()
    other.cert_pem.write_to_path(str(tmp_path / "other.pem"))
    port = start(serve, tls.server_context())
    with pytest.raises(ssl.SSLCertVerificationError):
        exchange(port, tls.client_context(ca_file=tmp_path / "other.pem"))


@pytest.mark.parametrize("version", tls.TLS_VERSIONS)
def test_versions_read_back_from_the_client(tls_home: Path, serve: list[OneShotServer], version: str) -> None:
    port = start(serve, tls.server_context(min_version=version, max_version=version))
    connection, _ = exchange(port, tls.client_context())
    assert connection.version() == f"TLSv{version}"
    connection.close()


def test_client_below_the_minimum_is_refused(tls_home: Path, serve: list[OneShotServer]) -> None:
    port = start(serve, tls.server_context(min_version="1.3"))
    client = tls.client_context()
    client.maximum_version = ssl.TLSVersion.TLSv1_2
    with pytest.raises(ssl.SSLError):
        exchange(port, client)


@pytest.mark.parametrize(("offered", "chosen"), [(("http/1.1",), "http/1.1"), ((), None)])
def test_alpn_read_back_from_the_client(tls_home: Path, serve: list[OneShotServer],
                                        offered: tuple[str, ...], chosen: str | None) -> None:
    port = start(serve, tls.server_context(alpn=offered))
    client = tls.client_context()
    client.set_alpn_protocols(["h2", "http/1.1"])
    connection, _ = exchange(port, client)
    assert connection.selected_alpn_protocol() == chosen
    connection.close()


@pytest.mark.parametrize("key_type", tls.KEY_TYPES)
def test_key_type_read_back_from_the_client(tls_home: Path, serve: list[OneShotServer],
                                           key_type: str) -> None:
    port = start(serve, tls.server_context(key_type=key_type))
    connection, _ = exchange(port, tls.client_context())
    der = connection.getpeercert(binary_form=True)
    assert der is not None
    assert tls.key_type_of(x509.load_der_x509_certificate(der).public_key()) == key_type
    connection.close()


@pytest.mark.parametrize("version", tls.TLS_VERSIONS)
@pytest.mark.parametrize("tickets", [True, False])
def test_resumption_follows_session_tickets(tls_home: Path, serve: list[OneShotServer],
                                           version: str, tickets: bool) -> None:
    """With tickets off nothing resumes, TLS 1.2's session-ID cache included (which resumes
    without tickets when left on)."""
    port = start(serve, tls.server_context(min_version=version, max_version=version,
                                           session_tickets=tickets), connections=2)
    client = tls.client_context()
    first, _ = exchange(port, client)
    session = first.session  # read after data: TLS 1.3 sends its tickets after the handshake
    first.unwrap()
    first.close()
    second, _ = exchange(port, client, session=session)
    assert second.session_reused is tickets
    second.close()


# --- mistakes: one line naming the knob --------------------------------------------------------

def test_user_certificate_mistakes_name_the_file_at_fault(tls_home: Path, tmp_path: Path) -> None:
    chain, key = tls.server_certificate()
    other_key = tmp_path / "other.key"
    other_key.write_bytes(ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    encrypted = tmp_path / "encrypted.key"
    encrypted.write_bytes(ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"secret")))
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate\n")
    cases = [
        ({"cert_file": tmp_path / "missing.pem", "key_file": key}, r"^tls_cert_file: cannot read .*missing"),
        ({"cert_file": garbage, "key_file": key}, r"^tls_cert_file: .* holds no PEM certificate"),
        ({"cert_file": chain, "key_file": garbage}, r"^tls_key_file: .* holds no PEM private key"),
        ({"cert_file": chain, "key_file": encrypted}, r"^tls_key_file: .* is encrypted"),
        ({"cert_file": chain, "key_file": other_key}, r"^tls_key_file: .* does not go with"),
        ({"cert_file": chain}, r"^tls_key_file: give the certificate and its key together"),
        ({"key_file": key}, r"^tls_cert_file: give the certificate and its key together"),
    ]
    for arguments, message in cases:
        with pytest.raises(ConfigError, match=message):
            tls.server_context(**arguments)  # type: ignore[arg-type]


@pytest.mark.parametrize(("arguments", "message"), [
    ({"key_type": "dsa"}, r"^tls_key_type: 'dsa' is not one of ecdsa-p256, rsa-2048, rsa-4096"),
    ({"min_version": "1.1"}, r"^tls_min_version: '1.1' is not one of 1.2, 1.3"),
    ({"min_version": "1.3", "max_version": "1.2"}, r"^tls_max_version: 1.2 is below tls_min_version 1.3"),
    ({"alpn": ("",)}, r"^tls_alpn: "),
])
def test_bad_settings_name_the_knob(tls_home: Path, arguments: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        tls.server_context(**arguments)  # type: ignore[arg-type]


def test_unreadable_ca_file_names_it(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^ca_file: cannot read"):
        tls.client_context(ca_file=tmp_path / "missing.pem")


def test_the_chain_sends_the_certificate_alone(tls_home: Path) -> None:
    chain, _ = tls.server_certificate()
    assert len(x509.load_pem_x509_certificates(chain.read_bytes())) == 1
