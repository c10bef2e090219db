"""TLS for both sides of the lab: its throw-away CA, server certificates, and the two contexts.

The lab's CA is made once per user and kept in a private cache folder (``LAB_TLS_DIR``, else
``$XDG_CACHE_HOME/latency-lab/tls``, else ``~/.cache/latency-lab/tls``; mode 0700, keys 0600).
It signs a server certificate per key type, valid for ``localhost``, 127.0.0.1, ::1 and the
server ends of the first emulated paths (lab/netpath), so a client that trusts the CA checks
host names as it would for a real service. Each CA and certificate is written into a fresh
folder that is then renamed into place: a rename is atomic, so a process that finds the folder
finds it whole, and of two processes making it at once the second keeps the first one's.

The server's and the load generator's settings both come down to :func:`server_context` and
:func:`client_context`; this module sits under both and imports only ``lab.errors``.
"""

from __future__ import annotations

import contextlib
import ctypes
import datetime
import hashlib
import ipaddress
import os
import shutil
import ssl
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from lab.errors import ConfigError

if TYPE_CHECKING:
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

# cryptography is imported where a certificate is made or read, not here: its x509 modules
# take ~35 ms to import, which every command and generator worker would pay, TLS or not.

KEY_TYPES = ("ecdsa-p256", "rsa-2048", "rsa-4096")
TLS_VERSIONS = ("1.2", "1.3")

_VERSIONS = {"1.2": ssl.TLSVersion.TLSv1_2, "1.3": ssl.TLSVersion.TLSv1_3}
# The server ends of the emulated paths, 198.19.<slot>.2 (lab/netpath/system.py; this module
# may not import it, tests/test_tls.py checks the two agree). An IP SAN names one address, not
# a range, and every one named is sent in each handshake: the first 16 slots cover every path
# the lab makes unless more than 16 run at once, for under 100 bytes of certificate.
_EMULATED_NETWORK = ipaddress.IPv4Network("198.19.0.0/16")
PATH_SLOTS_IN_CERTIFICATE = 16
_CA_DAYS = 3650
_SERVER_DAYS = 397  # the longest a browser accepts, so the certificate is an ordinary one
_RENEW_BEFORE = datetime.timedelta(days=1)


def tls_dir() -> Path:
    """The folder of the lab's CA and certificates, made (mode 0700) if it does not exist."""
    override = os.environ.get("LAB_TLS_DIR")
    if override:
        folder = Path(override)
    else:
        cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
        folder = Path(cache) / "latency-lab" / "tls"
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        if folder.stat().st_mode & 0o077:
            folder.chmod(0o700)  # mkdir's mode is filtered by the umask; the CA key lives here
    except OSError as error:
        raise ConfigError("tls", f"cannot keep the lab's certificates in {folder}: "
                                 f"{error.strerror} (set LAB_TLS_DIR to a folder of yours)") from None
    return folder


def lab_ca_file() -> Path:
    """The PEM certificate of the lab's CA, made on first use."""
    return _ca_folder() / "ca.pem"


def server_certificate(key_type: str = "ecdsa-p256") -> tuple[Path, Path]:
    """(certificate chain PEM, private key PEM) of a server certificate signed by the lab's CA,
    for ``localhost``, 127.0.0.1, ::1 and the emulated paths' server addresses."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec, rsa
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    _check_key_type(key_type)
    ca_folder = _ca_folder()
    ca_pem = (ca_folder / "ca.pem").read_bytes()
    # One folder per CA, so a CA made again (its folder removed) never meets an old certificate
    folder = tls_dir() / f"server-{hashlib.sha256(ca_pem).hexdigest()[:16]}" / key_type
    chain, key = folder / "chain.pem", folder / "key.pem"
    if folder.is_dir() and not _expiring(chain):
        return chain, key
    if folder.is_dir():
        shutil.rmtree(folder, ignore_errors=True)
    ca_cert = x509.load_pem_x509_certificate(ca_pem)
    ca_key = serialization.load_pem_private_key((ca_folder / "ca.key").read_bytes(), password=None)
    if not isinstance(ca_key, ec.EllipticCurvePrivateKey):
        raise ConfigError("tls", f"the lab's CA key in {ca_folder} is not the lab's; remove the folder")
    private_key = _new_key(key_type)
    names: list[x509.GeneralName] = [
        x509.DNSName("localhost"),
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
        x509.IPAddress(ipaddress.ip_address("::1")),
        *(x509.IPAddress(address) for address in path_server_addresses()),
    ]
    is_rsa = isinstance(private_key, rsa.RSAPrivateKey)
    certificate = (
        _builder(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]),
                 ca_cert.subject, private_key.public_key(), _SERVER_DAYS)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_encipherment=is_rsa,
                                     content_commitment=False, data_encipherment=False,
                                     key_agreement=False, key_cert_sign=False, crl_sign=False,
                                     encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                       critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    # The chain is the certificate alone: the CA is the client's trust anchor, and sending it
    # too would add its bytes to every handshake for nothing.
    _publish(folder, {"chain.pem": certificate.public_bytes(serialization.Encoding.PEM),
                      "key.pem": _private_bytes(private_key)})
    return chain, key


def path_server_addresses() -> list[ipaddress.IPv4Address]:
    """The emulated paths' server addresses the lab's certificates name (198.19.S.2)."""
    base = int(_EMULATED_NETWORK.network_address)
    return [ipaddress.IPv4Address(base + (slot << 8) + 2) for slot in range(PATH_SLOTS_IN_CERTIFICATE)]


def client_context(*, insecure: bool = False, ca_file: Path | None = None) -> ssl.SSLContext:
    """A client's context: it checks the server's certificate and host name unless ``insecure``.

    With no ``ca_file`` it trusts the lab's CA and the system's CAs: the lab's so that its own
    servers need no flag, the system's so that a service of the user's (``--allow-remote``)
    with a public certificate works without ``--insecure``. The CA's key never leaves the
    user's private cache folder, so trusting it in the lab's own client opens nothing to
    anyone else. With ``ca_file``, that file alone is trusted (as curl's ``--cacert``).
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if insecure:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    if ca_file is None:
        context.load_default_certs(ssl.Purpose.SERVER_AUTH)
        context.load_verify_locations(cafile=str(lab_ca_file()))
        return context
    try:
        context.load_verify_locations(cafile=str(ca_file))
    except OSError as error:
        raise ConfigError("ca_file", f"cannot read {ca_file}: {error.strerror}") from None
    except ssl.SSLError:
        raise ConfigError("ca_file", f"{ca_file} holds no PEM certificate") from None
    return context


def server_context(*, cert_file: Path | str | None = None, key_file: Path | str | None = None,
                   key_type: str = "ecdsa-p256", min_version: str = "1.2", max_version: str = "1.3",
                   session_tickets: bool = True, alpn: Sequence[str] = ("http/1.1",)) -> ssl.SSLContext:
    """A server's context: the user's certificate (``cert_file`` and ``key_file``) or the lab's
    of ``key_type``, the TLS versions from ``min_version`` to ``max_version``, resumption on or
    off, and the ALPN protocols offered (none when empty).

    ``session_tickets=False`` switches every kind of resumption off: TLS 1.3 tickets, TLS 1.2
    tickets, and the TLS 1.2 session-ID cache (which OpenSSL keeps for a server by default and
    which would still resume without tickets). Errors name the knob (``tls_cert_file``, ...).
    """
    _check_key_type(key_type)
    for option, version in (("tls_min_version", min_version), ("tls_max_version", max_version)):
        if version not in _VERSIONS:
            raise ConfigError(option, f"{version!r} is not one of {', '.join(TLS_VERSIONS)}")
    if _VERSIONS[min_version] > _VERSIONS[max_version]:
        raise ConfigError("tls_max_version", f"{max_version} is below tls_min_version {min_version}")
    for protocol in alpn:
        if not protocol or len(protocol.encode()) > 255:
            raise ConfigError("tls_alpn", f"{protocol!r}: a protocol name is 1 to 255 bytes")
    if (cert_file is None) != (key_file is None):
        missing = "tls_key_file" if key_file is None else "tls_cert_file"
        raise ConfigError(missing, "give the certificate and its key together (--cert and --key)")
    if cert_file is None or key_file is None:
        cert_file, key_file = server_certificate(key_type)
    else:
        _check_user_files(Path(cert_file), Path(key_file))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = _VERSIONS[min_version]
    context.maximum_version = _VERSIONS[max_version]
    try:
        context.load_cert_chain(str(cert_file), str(key_file))
    except ssl.SSLError as error:
        raise ConfigError("tls_key_file", f"{key_file} does not go with the certificate in "
                                          f"{cert_file} ({error.reason or error})") from None
    if alpn:
        context.set_alpn_protocols(list(alpn))
    if not session_tickets:
        context.options |= ssl.OP_NO_TICKET
        context.num_tickets = 0
        _switch_session_cache_off(context)
    return context


def certificate_key_type(cert_file: Path) -> str:
    """``ecdsa-p256``, ``rsa-2048``, ... of the first certificate in ``cert_file``."""
    from cryptography import x509

    return key_type_of(x509.load_pem_x509_certificate(cert_file.read_bytes()).public_key())


def key_type_of(public_key: object) -> str:
    """The name this module gives a certificate's key (``rsa-3072`` for sizes it does not make)."""
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    if isinstance(public_key, rsa.RSAPublicKey):
        return f"rsa-{public_key.key_size}"
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        return {"secp256r1": "ecdsa-p256"}.get(public_key.curve.name, f"ecdsa-{public_key.curve.name}")
    return type(public_key).__name__


# --- making and keeping the files ------------------------------------------------------------

def _ca_folder() -> Path:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    folder = tls_dir() / "ca"
    if folder.is_dir() and not _expiring(folder / "ca.pem"):
        return folder
    if folder.is_dir():
        shutil.rmtree(folder, ignore_errors=True)
    # P-256: the CA's signature is checked by clients only, and is cheapest to check
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Latency Lab"),
                         x509.NameAttribute(NameOID.COMMON_NAME, "Latency Lab throw-away CA")])
    certificate = (
        _builder(subject, subject, key.public_key(), _CA_DAYS)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=False, key_encipherment=False,
                                     content_commitment=False, data_encipherment=False,
                                     key_agreement=False, key_cert_sign=True, crl_sign=True,
                                     encipher_only=False, decipher_only=False), critical=True)
        .sign(key, hashes.SHA256())
    )
    _publish(folder, {"ca.pem": certificate.public_bytes(serialization.Encoding.PEM),
                      "ca.key": _private_bytes(key)})
    return folder


def _builder(subject: x509.Name, issuer: x509.Name, public_key: ec.EllipticCurvePublicKey | rsa.RSAPublicKey,
             days: int) -> x509.CertificateBuilder:
    from cryptography import x509

    now = datetime.datetime.now(datetime.UTC)
    return (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer)
            .public_key(public_key).serial_number(x509.random_serial_number())
            # an hour back: a clock a little behind the one that signed still accepts it
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=days))
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False))


def _new_key(key_type: str) -> ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey:
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    if key_type == "ecdsa-p256":
        return ec.generate_private_key(ec.SECP256R1())
    return rsa.generate_private_key(public_exponent=65537, key_size=int(key_type.split("-")[1]))


def _private_bytes(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _publish(folder: Path, files: dict[str, bytes]) -> None:
    """Write ``files`` into a new folder and rename it to ``folder``; if another process got
    there first, keep its folder (a certificate and its key must come from the same maker)."""
    folder.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=folder.parent))  # mode 0700
    try:
        for name, data in files.items():
            descriptor = os.open(staging / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(descriptor, "wb") as file:
                file.write(data)
        staging.chmod(0o700)
        with contextlib.suppress(FileExistsError, OSError):
            os.rename(staging, folder)  # fails when the folder exists: the other maker's stays
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    if not folder.is_dir():
        raise ConfigError("tls", f"cannot write the lab's certificates in {folder.parent}")


def _expiring(cert_file: Path) -> bool:
    from cryptography import x509

    try:
        certificate = x509.load_pem_x509_certificate(cert_file.read_bytes())
    except (OSError, ValueError):
        return True  # unreadable counts as expired: it is made again
    return certificate.not_valid_after_utc - _RENEW_BEFORE < datetime.datetime.now(datetime.UTC)


def _check_key_type(key_type: str) -> None:
    if key_type not in KEY_TYPES:
        raise ConfigError("tls_key_type", f"{key_type!r} is not one of {', '.join(KEY_TYPES)}")


def _check_user_files(cert_file: Path, key_file: Path) -> None:
    """Each file readable and of the right kind, so that the error names the one at fault
    (OpenSSL's own error for either is ``[SSL] PEM lib``)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    for option, path in (("tls_cert_file", cert_file), ("tls_key_file", key_file)):
        try:
            data = path.read_bytes()
        except OSError as error:
            raise ConfigError(option, f"cannot read {path}: {error.strerror}") from None
        if option == "tls_cert_file":
            try:
                x509.load_pem_x509_certificates(data)
            except ValueError:
                raise ConfigError(option, f"{path} holds no PEM certificate") from None
        else:
            try:
                serialization.load_pem_private_key(data, password=None)
            except TypeError:
                raise ConfigError(option, f"{path} is encrypted; give a key without a passphrase") from None
            except ValueError:
                raise ConfigError(option, f"{path} holds no PEM private key") from None


# OpenSSL's SSL_CTX_set_session_cache_mode is a macro over SSL_CTX_ctrl (ssl.h)
_SSL_CTRL_SET_SESS_CACHE_MODE = 44
_SSL_SESS_CACHE_OFF = 0


def _switch_session_cache_off(context: ssl.SSLContext) -> None:
    """Turn the server's TLS 1.2 session-ID cache off, which Python's ssl does not expose.

    Called through the very libssl Python's ``_ssl`` uses, on the ``SSL_CTX`` pointer that is
    the first field after the object header of CPython's context object; the pointer is
    checked (OpenSSL's options must read back as Python's) before anything is written.
    """
    import _ssl

    library = ctypes.CDLL(_ssl.__file__)
    pointer = ctypes.c_void_p.from_address(id(context) + object.__basicsize__).value
    get_options = library.SSL_CTX_get_options
    get_options.restype, get_options.argtypes = ctypes.c_uint64, [ctypes.c_void_p]
    if not pointer or get_options(pointer) != context.options:
        raise ConfigError("tls_session_tickets", "this Python's ssl module cannot switch TLS 1.2 "
                                                 "session-ID resumption off")
    control = library.SSL_CTX_ctrl
    control.restype = ctypes.c_long
    control.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_long, ctypes.c_void_p]
    control(pointer, _SSL_CTRL_SET_SESS_CACHE_MODE, _SSL_SESS_CACHE_OFF, None)
