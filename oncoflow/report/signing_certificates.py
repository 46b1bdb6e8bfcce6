"""The key and certificates that sign OncoFlow's clinical PDF reports.

A site configures a PEM private key, its certificate and the issuer chain (``ONCOFLOW_SIGNING_KEY``,
``ONCOFLOW_SIGNING_CERT``, ``ONCOFLOW_SIGNING_CHAIN``); :func:`load_signer` reads and checks them and
raises :class:`SigningConfigError`, naming the file and the problem, when they cannot sign.

Without a configured signer, ``make up`` calls :func:`ensure_development_signer` once: it creates a
development CA and a signing certificate issued by it under ``ONCOFLOW_HOME/signing``:

=================  ====================================================================================
``ca.key``         the CA's RSA 3072 private key (0600)
``ca.pem``         the CA's self-signed certificate: CA:true, keyCertSign + cRLSign, 10 years; the trust
                   root a verifier needs (``oncoflow verify-report``, or imported into a PDF reader)
``signer.key``     the signer's RSA 3072 private key (0600)
``signer.pem``     CN "OncoFlow report signer (development)", O = the institution; digitalSignature +
                   nonRepudiation, extended key usages emailProtection and document signing, 2 years
=================  ====================================================================================

Keys are RSA: endesive (which writes the CMS signature) labels every non-PSS signature as
``rsassa_pkcs1v15``, so an ECDSA signature it makes fails verification. Keys are stored unencrypted
(the directory is 0700, the key files 0600); a production site configures its own key and certificate.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID, ObjectIdentifier

DEVELOPMENT_SIGNER_CN = "OncoFlow report signer (development)"
DEVELOPMENT_CA_CN = "OncoFlow development CA"
CA_CERT_FILE, CA_KEY_FILE = "ca.pem", "ca.key"
SIGNER_CERT_FILE, SIGNER_KEY_FILE = "signer.pem", "signer.key"

RSA_KEY_BITS = 3072
MIN_RSA_KEY_BITS = 2048
CA_VALIDITY = dt.timedelta(days=3652)  # 10 years
SIGNER_VALIDITY = dt.timedelta(days=730)  # 2 years
CLOCK_SKEW = dt.timedelta(minutes=5)  # certificates start this long before their creation

DOCUMENT_SIGNING_OID = ObjectIdentifier("1.3.6.1.5.5.7.3.36")  # id-kp-documentSigning (RFC 9336)
MICROSOFT_DOCUMENT_SIGNING_OID = ObjectIdentifier("1.3.6.1.4.1.311.10.3.12")  # Adobe / Windows document signing


class SigningConfigError(ValueError):
    """The configured signing key or certificates cannot sign reports; the message names the file and why."""


@dataclass(frozen=True)
class Signer:
    """A private key, its certificate and the certificates that issued it (nearest issuer first, root last)."""

    private_key: rsa.RSAPrivateKey
    certificate: x509.Certificate
    chain: tuple[x509.Certificate, ...]

    @property
    def subject_name(self) -> str:
        """The certificate's common name (the full subject when it has none), for the report's signature block."""
        return _common_name(self.certificate)


def ensure_development_signer(directory: Path, institution: str) -> bool:
    """Create a development CA and a signing certificate in ``directory`` unless ``signer.pem`` exists.

    Returns True when it created them. An existing ``ca.pem`` + ``ca.key`` pair is reused, so a
    root that verifiers already trust stays valid. The directory is made 0700 and the keys 0600.
    """
    directory = Path(directory)
    if (directory / SIGNER_CERT_FILE).exists():
        return False
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    directory.chmod(0o700)
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    organisation = institution.strip()

    existing_ca = _load_existing_ca(directory)
    if existing_ca is None:
        ca_key = rsa.generate_private_key(public_exponent=65537, key_size=RSA_KEY_BITS)
        ca_cert = _development_ca_certificate(ca_key, organisation, now)
        _write_file(directory / CA_KEY_FILE, _private_key_pem(ca_key), 0o600)
        _write_file(directory / CA_CERT_FILE, ca_cert.public_bytes(serialization.Encoding.PEM), 0o644)
    else:
        ca_key, ca_cert = existing_ca

    signer_key = rsa.generate_private_key(public_exponent=65537, key_size=RSA_KEY_BITS)
    signer_cert = _development_signer_certificate(signer_key, ca_key, ca_cert, organisation, now)
    _write_file(directory / SIGNER_KEY_FILE, _private_key_pem(signer_key), 0o600)
    # Written last: its presence means the set is complete.
    _write_file(directory / SIGNER_CERT_FILE, signer_cert.public_bytes(serialization.Encoding.PEM), 0o644)
    return True


def load_signer(key_path: Path, cert_path: Path, chain_path: Path) -> Signer:
    """Read and check the PEM private key, certificate and issuer chain that sign reports.

    The certificate file's first certificate is the signer's; further certificates in it join the
    chain file's. Raises :class:`SigningConfigError` when a file is missing or unreadable, when the
    key is not an unencrypted RSA key of at least 2048 bits or does not match the certificate, when
    the certificate is expired or not yet valid or lacks the digitalSignature / nonRepudiation key
    usage, or when no certificate of the chain issued it (or an issuer is not a valid CA).
    """
    key_path, cert_path, chain_path = Path(key_path), Path(cert_path), Path(chain_path)
    private_key = _read_private_key(key_path)
    certificates = _read_certificates(cert_path)
    certificate = certificates[0]
    pool = [*certificates[1:], *_read_certificates(chain_path)]
    now = dt.datetime.now(dt.UTC)

    if _public_der(private_key.public_key()) != _public_der(certificate.public_key()):
        raise SigningConfigError(f"{key_path}: this private key does not belong to the certificate in {cert_path}")
    _check_validity(certificate, cert_path, now)
    _check_signing_key_usage(certificate, cert_path)
    chain = _issuer_chain(certificate, pool, cert_path, chain_path)
    for issuer in chain:
        _check_validity(issuer, chain_path, now)
    return Signer(private_key=private_key, certificate=certificate, chain=chain)


def _common_name(certificate: x509.Certificate) -> str:
    names = certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(names[0].value) if names else certificate.subject.rfc4514_string()


def _name(common_name: str, organisation: str) -> x509.Name:
    attributes = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    if organisation:
        attributes.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, organisation))
    return x509.Name(attributes)


def _development_ca_certificate(key: rsa.RSAPrivateKey, organisation: str, now: dt.datetime) -> x509.Certificate:
    name = _name(DEVELOPMENT_CA_CN, organisation)
    subject_key_id = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - CLOCK_SKEW)
        .not_valid_after(now + CA_VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                          data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
                          encipher_only=False, decipher_only=False),
            critical=True)
        .add_extension(subject_key_id, critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(subject_key_id), critical=False)
        .sign(key, hashes.SHA256())
    )


def _development_signer_certificate(key: rsa.RSAPrivateKey, ca_key: rsa.RSAPrivateKey, ca_cert: x509.Certificate,
                                    organisation: str, now: dt.datetime) -> x509.Certificate:
    not_after = min(now + SIGNER_VALIDITY, ca_cert.not_valid_after_utc)
    try:
        ca_key_id = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        authority_key_id = x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_key_id)
    except x509.ExtensionNotFound:
        authority_key_id = x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key())
    return (
        x509.CertificateBuilder()
        .subject_name(_name(DEVELOPMENT_SIGNER_CN, organisation))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - CLOCK_SKEW)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(digital_signature=True, content_commitment=True, key_encipherment=False,
                          data_encipherment=False, key_agreement=False, key_cert_sign=False, crl_sign=False,
                          encipher_only=False, decipher_only=False),
            critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION, DOCUMENT_SIGNING_OID,
                                   MICROSOFT_DOCUMENT_SIGNING_OID]),
            critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(authority_key_id, critical=False)
        .sign(ca_key, hashes.SHA256())
    )


def _load_existing_ca(directory: Path) -> tuple[rsa.RSAPrivateKey, x509.Certificate] | None:
    """The CA already in ``directory``, or None when either of its files is missing."""
    key_path, cert_path = directory / CA_KEY_FILE, directory / CA_CERT_FILE
    if not (key_path.exists() and cert_path.exists()):
        return None
    key, cert = _read_private_key(key_path), _read_certificates(cert_path)[0]
    if _public_der(key.public_key()) != _public_der(cert.public_key()):
        raise SigningConfigError(f"{key_path}: this private key does not belong to the CA certificate {cert_path}")
    if not _is_ca(cert):
        raise SigningConfigError(f"{cert_path}: not a CA certificate (basicConstraints CA:true is missing)")
    return key, cert


def _private_key_pem(key: rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _write_file(path: Path, data: bytes, mode: int) -> None:
    """Write ``data`` to ``path`` atomically, created with ``mode`` (never readable by others in between)."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        with os.fdopen(descriptor, "wb") as stream:
            stream.write(data)
        os.chmod(temporary, mode)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise SigningConfigError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise SigningConfigError(f"{path}: is a directory, not a PEM file") from None
    except OSError as error:
        raise SigningConfigError(f"{path}: cannot be read ({error.strerror or error})") from None


def _read_private_key(path: Path) -> rsa.RSAPrivateKey:
    data = _read_bytes(path)
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except TypeError:
        raise SigningConfigError(f"{path}: the private key is encrypted; an unencrypted PEM key is required") from None
    except (ValueError, UnsupportedAlgorithm) as error:
        raise SigningConfigError(f"{path}: not a PEM private key ({error})") from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise SigningConfigError(f"{path}: a {type(key).__name__.removeprefix('_')} cannot sign reports; "
                                 "an RSA key is required")
    if key.key_size < MIN_RSA_KEY_BITS:
        raise SigningConfigError(f"{path}: RSA key of {key.key_size} bits; at least {MIN_RSA_KEY_BITS} are required")
    return key


def _read_certificates(path: Path) -> list[x509.Certificate]:
    data = _read_bytes(path)
    try:
        certificates = x509.load_pem_x509_certificates(data)
    except ValueError as error:
        raise SigningConfigError(f"{path}: not a PEM certificate file ({error})") from None
    if not certificates:  # pragma: no cover - cryptography raises on an empty file
        raise SigningConfigError(f"{path}: holds no certificate")
    return certificates


def _public_der(public_key: object) -> bytes:
    return public_key.public_bytes(serialization.Encoding.DER,  # type: ignore[attr-defined]
                                   serialization.PublicFormat.SubjectPublicKeyInfo)


def _check_validity(certificate: x509.Certificate, path: Path, now: dt.datetime) -> None:
    who = f"certificate {_common_name(certificate)!r}"
    if now < certificate.not_valid_before_utc:
        raise SigningConfigError(f"{path}: {who} is not valid yet (from {certificate.not_valid_before_utc:%Y-%m-%d})")
    if now > certificate.not_valid_after_utc:
        raise SigningConfigError(f"{path}: {who} expired on {certificate.not_valid_after_utc:%Y-%m-%d}")


def _check_signing_key_usage(certificate: x509.Certificate, path: Path) -> None:
    try:
        usage = certificate.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        raise SigningConfigError(f"{path}: the certificate has no key usage extension; digitalSignature and "
                                 "nonRepudiation (contentCommitment) are required for signing reports") from None
    missing = [name for name, present in (("digitalSignature", usage.digital_signature),
                                          ("nonRepudiation", usage.content_commitment)) if not present]
    if missing:
        raise SigningConfigError(f"{path}: the certificate's key usage lacks {' and '.join(missing)}, "
                                 "needed to sign reports")


def _is_ca(certificate: x509.Certificate) -> bool:
    try:
        return certificate.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        return False


def _directly_issued_by(certificate: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        certificate.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _issuer_chain(certificate: x509.Certificate, pool: Sequence[x509.Certificate], cert_path: Path,
                  chain_path: Path) -> tuple[x509.Certificate, ...]:
    """The issuers of ``certificate`` found in ``pool``, nearest first, up to a self-signed root or the pool's end."""
    remaining, chain, current = list(pool), [], certificate
    while True:
        issuer = next((c for c in remaining if _directly_issued_by(current, c)), None)
        if issuer is None:
            break
        if not _is_ca(issuer):
            raise SigningConfigError(f"{chain_path}: {_common_name(issuer)!r} issued {_common_name(current)!r} "
                                     "but is not a CA certificate (basicConstraints CA:true is missing)")
        chain.append(issuer)
        remaining.remove(issuer)
        if _directly_issued_by(issuer, issuer):
            break
        current = issuer
    if not chain:
        raise SigningConfigError(f"{chain_path}: no certificate in it issued the signing certificate in {cert_path} "
                                 f"(issuer {certificate.issuer.rfc4514_string()})")
    return tuple(chain)
