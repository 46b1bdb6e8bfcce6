"""Signing the clinical PDF report: development CA, signer loading, PAdES signing, independent verification.

Signatures are checked by two verifiers that share no code with the signer (endesive): pyHanko,
through :func:`oncoflow.report.signed_pdf_check.check_signed_pdf`, and poppler's ``pdfsig`` (NSS).
"""

from __future__ import annotations

import datetime as dt
import io
import re
import stat
import subprocess
from pathlib import Path

import pytest
from asn1crypto import cms
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from pypdf import PdfReader, PdfWriter
from pypdf.generic import DecodedStreamObject, NameObject
from reportlab.lib.pagesizes import A4
from reportlab.pdfgen import canvas

from oncoflow.report.pdf_signature import sign_pdf
from oncoflow.report.signed_pdf_check import check_signed_pdf
from oncoflow.report.signing_certificates import (
    DEVELOPMENT_SIGNER_CN,
    Signer,
    SigningConfigError,
    ensure_development_signer,
    load_signer,
)

from .conftest import required_tool

INSTITUTION = "Hôpital de Test, Neuro-oncology"
SIGNING_TIME = dt.datetime(2025, 3, 14, 9, 26, 53, tzinfo=dt.UTC)
TAMPER_TARGET = b"Whole tumour volume: 12.4 cm3"  # in page 1's (uncompressed) content stream


def report_pdf(pages: int = 2) -> bytes:
    """A small real report: ``pages`` pages of text, content streams uncompressed so the test can tamper."""
    buffer = io.BytesIO()
    page = canvas.Canvas(buffer, pagesize=A4, pageCompression=0)
    page.setTitle("OncoFlow report")
    for number in range(1, pages + 1):
        page.setFont("Helvetica-Bold", 16)
        page.drawString(72, 780, f"OncoFlow tumour report, page {number}")
        page.setFont("Helvetica", 11)
        lines = [TAMPER_TARGET.decode()] if number == 1 else []
        lines += [f"Finding {i}: enhancing lesion, left frontal lobe, follow-up {i}" for i in range(30)]
        for row, line in enumerate(lines):
            page.drawString(72, 750 - 16 * row, line)
        page.showPage()
    page.save()
    return buffer.getvalue()


def pem(certificate: x509.Certificate) -> bytes:
    return certificate.public_bytes(serialization.Encoding.PEM)


def key_pem(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def issue(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey, issuer_key: rsa.RSAPrivateKey,
          issuer: x509.Certificate | None, *, common_name: str = "Test signer", ca: bool = False,
          not_before: dt.datetime | None = None, not_after: dt.datetime | None = None,
          digital_signature: bool = True) -> x509.Certificate:
    """A certificate for ``key`` issued by ``issuer`` (self-signed when None), made with cryptography."""
    now = dt.datetime.now(dt.UTC)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    usage = x509.KeyUsage(digital_signature=digital_signature and not ca, content_commitment=not ca,
                          key_encipherment=not digital_signature, data_encipherment=False, key_agreement=False,
                          key_cert_sign=ca, crl_sign=ca, encipher_only=False, decipher_only=False)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer.subject if issuer is not None else subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before or now - dt.timedelta(days=1))
        .not_valid_after(not_after or now + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(usage, critical=True)
        .sign(issuer_key, hashes.SHA256())
    )


def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def run_pdfsig(pdf: bytes, directory: Path) -> str:
    path = directory / "checked.pdf"
    path.write_bytes(pdf)
    result = subprocess.run([required_tool("pdfsig"), str(path)], capture_output=True, text=True, timeout=60)
    return result.stdout + result.stderr


def byte_range(pdf: bytes) -> list[int]:
    match = re.search(rb"/ByteRange\s*\[\s*(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s*\]", pdf)
    assert match is not None
    return [int(value) for value in match.groups()]


def signature_contents(pdf: bytes) -> cms.ContentInfo:
    _, length, start, _ = byte_range(pdf)
    hex_string = pdf[length:start]
    assert hex_string.startswith(b"<") and hex_string.endswith(b">")
    return cms.ContentInfo.load(bytes.fromhex(hex_string[1:-1].decode()))


@pytest.fixture(scope="module")
def signing_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("home") / "signing"
    assert ensure_development_signer(directory, INSTITUTION) is True
    return directory


@pytest.fixture(scope="module")
def signer(signing_dir: Path) -> Signer:
    return load_signer(signing_dir / "signer.key", signing_dir / "signer.pem", signing_dir / "ca.pem")


@pytest.fixture(scope="module")
def ca_certificate(signing_dir: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate((signing_dir / "ca.pem").read_bytes())


@pytest.fixture(scope="module")
def ca_key(signing_dir: Path) -> rsa.RSAPrivateKey:
    key = serialization.load_pem_private_key((signing_dir / "ca.key").read_bytes(), password=None)
    assert isinstance(key, rsa.RSAPrivateKey)
    return key


@pytest.fixture(scope="module")
def original_pdf() -> bytes:
    return report_pdf()


@pytest.fixture(scope="module")
def signed_pdf(original_pdf: bytes, signer: Signer) -> bytes:
    return sign_pdf(original_pdf, signer, reason="Clinical tumour report", location=INSTITUTION,
                    signing_time=SIGNING_TIME, contact="oncoflow@example.org")


# -- development CA ------------------------------------------------------------------------------------------


def test_development_signer_is_created_once(signing_dir: Path) -> None:
    files = {name: (signing_dir / name).read_bytes() for name in ("ca.pem", "ca.key", "signer.pem", "signer.key")}
    assert ensure_development_signer(signing_dir, INSTITUTION) is False
    assert {name: (signing_dir / name).read_bytes() for name in files} == files
    assert stat.S_IMODE(signing_dir.stat().st_mode) == 0o700
    assert stat.S_IMODE((signing_dir / "ca.key").stat().st_mode) == 0o600
    assert stat.S_IMODE((signing_dir / "signer.key").stat().st_mode) == 0o600
    assert sorted(path.name for path in signing_dir.iterdir()) == ["ca.key", "ca.pem", "signer.key", "signer.pem"]


def test_development_certificates(signer: Signer, ca_certificate: x509.Certificate) -> None:
    certificate = signer.certificate
    assert signer.subject_name == DEVELOPMENT_SIGNER_CN
    assert certificate.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == INSTITUTION
    assert signer.chain == (ca_certificate,)
    assert isinstance(signer.private_key, rsa.RSAPrivateKey) and signer.private_key.key_size == 3072
    certificate.verify_directly_issued_by(ca_certificate)
    ca_certificate.verify_directly_issued_by(ca_certificate)

    assert ca_certificate.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is True
    ca_usage = ca_certificate.extensions.get_extension_for_class(x509.KeyUsage).value
    assert ca_usage.key_cert_sign and ca_usage.crl_sign
    ca_years = (ca_certificate.not_valid_after_utc - ca_certificate.not_valid_before_utc).days / 365.25
    assert 9.9 < ca_years < 10.1

    assert certificate.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    usage = certificate.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.digital_signature and usage.content_commitment and not usage.key_cert_sign
    assert ExtendedKeyUsageOID.EMAIL_PROTECTION in certificate.extensions.get_extension_for_class(
        x509.ExtendedKeyUsage).value
    years = (certificate.not_valid_after_utc - certificate.not_valid_before_utc).days / 365.25
    assert 1.9 < years < 2.1
    authority_key_id = certificate.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    ca_key_id = ca_certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert authority_key_id.key_identifier == ca_key_id.digest


def test_missing_signer_is_reissued_by_the_existing_ca(tmp_path: Path) -> None:
    directory = tmp_path / "signing"
    assert ensure_development_signer(directory, INSTITUTION) is True
    ca_pem = (directory / "ca.pem").read_bytes()
    first_signer = (directory / "signer.pem").read_bytes()
    (directory / "signer.pem").unlink()
    assert ensure_development_signer(directory, INSTITUTION) is True
    assert (directory / "ca.pem").read_bytes() == ca_pem
    assert (directory / "signer.pem").read_bytes() != first_signer
    assert load_signer(directory / "signer.key", directory / "signer.pem", directory / "ca.pem").chain[0] == \
        x509.load_pem_x509_certificate(ca_pem)


# -- load_signer's checks ------------------------------------------------------------------------------------


def write_set(directory: Path, key: object, certificate: x509.Certificate,
              chain: list[x509.Certificate]) -> tuple[Path, Path, Path]:
    directory.mkdir(exist_ok=True)
    paths = directory / "k.pem", directory / "c.pem", directory / "chain.pem"
    paths[0].write_bytes(key_pem(key))  # type: ignore[arg-type]
    paths[1].write_bytes(pem(certificate))
    paths[2].write_bytes(b"".join(pem(c) for c in chain))
    return paths


def test_load_signer_accepts_a_certificate_the_ca_issued(tmp_path: Path, ca_key: rsa.RSAPrivateKey,
                                                         ca_certificate: x509.Certificate) -> None:
    key = rsa_key()
    loaded = load_signer(*write_set(tmp_path, key, issue(key, ca_key, ca_certificate, common_name="Dr Test"),
                                    [ca_certificate]))
    assert loaded.subject_name == "Dr Test"
    assert loaded.chain == (ca_certificate,)


def test_load_signer_reports_a_missing_file(signing_dir: Path, tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "signer.key"
    with pytest.raises(SigningConfigError, match=rf"{re.escape(str(missing))}: file not found"):
        load_signer(missing, signing_dir / "signer.pem", signing_dir / "ca.pem")
    with pytest.raises(SigningConfigError, match="not a PEM private key"):
        load_signer(signing_dir / "ca.pem", signing_dir / "signer.pem", signing_dir / "ca.pem")


def test_load_signer_refuses_a_key_of_another_certificate(signing_dir: Path) -> None:
    with pytest.raises(SigningConfigError, match=r"ca\.key: this private key does not belong to the certificate"):
        load_signer(signing_dir / "ca.key", signing_dir / "signer.pem", signing_dir / "ca.pem")
    assert issubclass(SigningConfigError, ValueError)


def test_load_signer_refuses_an_expired_certificate(tmp_path: Path, ca_key: rsa.RSAPrivateKey,
                                                    ca_certificate: x509.Certificate) -> None:
    key, now = rsa_key(), dt.datetime.now(dt.UTC)
    expired = issue(key, ca_key, ca_certificate, not_before=now - dt.timedelta(days=400),
                    not_after=now - dt.timedelta(days=1))
    with pytest.raises(SigningConfigError, match=r"c\.pem: certificate 'Test signer' expired on"):
        load_signer(*write_set(tmp_path / "expired", key, expired, [ca_certificate]))
    future = issue(key, ca_key, ca_certificate, not_before=now + dt.timedelta(days=2))
    with pytest.raises(SigningConfigError, match="is not valid yet"):
        load_signer(*write_set(tmp_path / "future", key, future, [ca_certificate]))


def test_load_signer_refuses_a_chain_that_did_not_issue_the_certificate(
        tmp_path: Path, ca_key: rsa.RSAPrivateKey, ca_certificate: x509.Certificate) -> None:
    other_ca_key = rsa_key()
    other_ca = issue(other_ca_key, other_ca_key, None, common_name="OncoFlow development CA", ca=True)
    key = rsa_key()
    with pytest.raises(SigningConfigError, match=r"chain\.pem: no certificate in it issued the signing certificate"):
        load_signer(*write_set(tmp_path, key, issue(key, ca_key, ca_certificate), [other_ca]))


def test_load_signer_refuses_a_certificate_without_signing_key_usage(
        tmp_path: Path, ca_key: rsa.RSAPrivateKey, ca_certificate: x509.Certificate) -> None:
    key = rsa_key()
    encryption_only = issue(key, ca_key, ca_certificate, digital_signature=False)
    with pytest.raises(SigningConfigError, match=r"c\.pem: the certificate's key usage lacks digitalSignature"):
        load_signer(*write_set(tmp_path, key, encryption_only, [ca_certificate]))


def test_load_signer_refuses_an_ec_key(tmp_path: Path, ca_key: rsa.RSAPrivateKey,
                                       ca_certificate: x509.Certificate) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    with pytest.raises(SigningConfigError, match="an RSA key is required"):
        load_signer(*write_set(tmp_path, key, issue(key, ca_key, ca_certificate), [ca_certificate]))


# -- the signed PDF --------------------------------------------------------------------------------------------


def test_signature_is_an_incremental_pades_update_covering_the_file(original_pdf: bytes, signed_pdf: bytes,
                                                                    signer: Signer) -> None:
    assert signed_pdf.startswith(original_pdf) and len(signed_pdf) > len(original_pdf)
    update = signed_pdf[len(original_pdf):]
    assert b"/SubFilter /ETSI.CAdES.detached" in update and b"/Filter /Adobe.PPKLite" in update
    catalog = PdfReader(io.BytesIO(signed_pdf)).trailer["/Root"]
    assert catalog["/Extensions"]["/ESIC"]["/ExtensionLevel"] == 1 and catalog["/Version"] == "/1.7"
    field = catalog["/AcroForm"]["/Fields"][0].get_object()
    signature = field["/V"]
    assert field["/T"] == "OncoFlowSignature" and catalog["/AcroForm"]["/SigFlags"] == 3
    assert signature["/M"] == "D:20250314092653+00'00'" and signature["/Reason"] == "Clinical tumour report"
    assert signature["/Location"] == INSTITUTION and signature["/Contact"] == "oncoflow@example.org"

    start1, length1, start2, length2 = byte_range(signed_pdf)
    assert start1 == 0 and start2 + length2 == len(signed_pdf) and length1 > len(original_pdf)
    gap = signed_pdf[length1:start2]  # the only unsigned bytes: the /Contents hex string
    assert gap.startswith(b"<") and gap.endswith(b">") and re.fullmatch(rb"[0-9a-f]+", gap[1:-1])

    signed_data = signature_contents(signed_pdf)["content"]
    signer_info = signed_data["signer_infos"][0]
    assert signer_info["digest_algorithm"]["algorithm"].native == "sha256"
    attributes = {attribute["type"].native for attribute in signer_info["signed_attrs"]}
    assert {"content_type", "message_digest", "signing_certificate_v2"} <= attributes
    assert "signing_time" not in attributes  # PAdES: the time is the dictionary's /M
    embedded = {certificate.chosen.dump() for certificate in signed_data["certificates"]}
    expected = {c.public_bytes(serialization.Encoding.DER) for c in (signer.certificate, *signer.chain)}
    assert embedded == expected


def test_pyhanko_validates_the_signature(signed_pdf: bytes, ca_certificate: x509.Certificate) -> None:
    check = check_signed_pdf(signed_pdf, [ca_certificate])
    assert check.ok, check.problems
    assert check.problems == ()
    assert check.sub_filter == "ETSI.CAdES.detached"
    assert check.signer_subject == DEVELOPMENT_SIGNER_CN
    assert check.signing_time == SIGNING_TIME


def test_pdfsig_validates_the_signature(signed_pdf: bytes, tmp_path: Path) -> None:
    output = run_pdfsig(signed_pdf, tmp_path)
    assert "Signature Validation: Signature is Valid." in output, output
    assert f"Signer Certificate Common Name: {DEVELOPMENT_SIGNER_CN}" in output
    assert "Signature Type: ETSI.CAdES.detached" in output
    assert "Signing Hash Algorithm: SHA-256" in output
    assert "Total document signed" in output and "Not total document signed" not in output


def test_pdftotext_reads_the_signed_report(signed_pdf: bytes, original_pdf: bytes, tmp_path: Path) -> None:
    texts = []
    for name, pdf in (("original.pdf", original_pdf), ("signed.pdf", signed_pdf)):
        (tmp_path / name).write_bytes(pdf)
        texts.append(subprocess.run([required_tool("pdftotext"), str(tmp_path / name), "-"], capture_output=True,
                                    text=True, check=True, timeout=60).stdout)
    assert TAMPER_TARGET.decode() in texts[1] and "OncoFlow tumour report, page 2" in texts[1]
    assert texts[1] == texts[0]


def test_a_pdf_with_a_cross_reference_stream_is_signed(signer: Signer, ca_certificate: x509.Certificate) -> None:
    from pyhanko.pdf_utils.reader import PdfFileReader
    from pyhanko.pdf_utils.writer import copy_into_new_writer

    writer = copy_into_new_writer(PdfFileReader(io.BytesIO(report_pdf(1))), writer_kwargs={"stream_xrefs": True})
    buffer = io.BytesIO()
    writer.write(buffer)
    original = buffer.getvalue()
    assert b"/XRef" in original
    signed = sign_pdf(original, signer, reason="r", location="l", signing_time=SIGNING_TIME)
    assert b"/Type /XRef" in signed[len(original):]
    assert check_signed_pdf(signed, [ca_certificate]).ok


def test_a_second_signature_keeps_both_valid(signed_pdf: bytes, signer: Signer,
                                             ca_certificate: x509.Certificate) -> None:
    twice = sign_pdf(signed_pdf, signer, reason="Countersigned", location="l", signing_time=SIGNING_TIME)
    fields = PdfReader(io.BytesIO(twice)).trailer["/Root"]["/AcroForm"]["/Fields"]
    assert [field.get_object()["/T"] for field in fields] == ["OncoFlowSignature", "OncoFlowSignature_1"]
    check = check_signed_pdf(twice, [ca_certificate])
    assert check.ok, check.problems


def test_sign_pdf_refuses_bad_input(signer: Signer, original_pdf: bytes) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        sign_pdf(original_pdf, signer, reason="r", location="l", signing_time=dt.datetime(2025, 1, 1))
    with pytest.raises(ValueError, match="not a PDF"):
        sign_pdf(b"<html>report</html>", signer, reason="r", location="l", signing_time=SIGNING_TIME)
    encrypted = PdfWriter(clone_from=PdfReader(io.BytesIO(original_pdf)))
    encrypted.encrypt("secret")
    buffer = io.BytesIO()
    encrypted.write(buffer)
    with pytest.raises(ValueError, match="encrypted"):
        sign_pdf(buffer.getvalue(), signer, reason="r", location="l", signing_time=SIGNING_TIME)


# -- failures the verifiers must catch ------------------------------------------------------------------------


def tampered(signed_pdf: bytes) -> bytes:
    assert signed_pdf.count(TAMPER_TARGET) == 1
    return signed_pdf.replace(TAMPER_TARGET, TAMPER_TARGET.replace(b"12.4", b"02.4"))


def test_pyhanko_rejects_altered_content(signed_pdf: bytes, ca_certificate: x509.Certificate) -> None:
    check = check_signed_pdf(tampered(signed_pdf), [ca_certificate])
    assert check.signed and not check.intact and not check.ok
    assert any("altered" in problem for problem in check.problems)


def test_pdfsig_rejects_altered_content(signed_pdf: bytes, tmp_path: Path) -> None:
    output = run_pdfsig(tampered(signed_pdf), tmp_path)
    assert "Signature is Valid." not in output
    assert "Digest Mismatch." in output or "Signature is Invalid." in output, output


def forged_signature_value(signed_pdf: bytes) -> bytes:
    """The signed PDF with one hex digit of the RSA signature value (inside /Contents) changed."""
    value = signature_contents(signed_pdf)["content"]["signer_infos"][0]["signature"].native.hex().encode()
    position = signed_pdf.index(value) + len(value) // 2
    digit = b"0" if signed_pdf[position:position + 1] != b"0" else b"1"
    return signed_pdf[:position] + digit + signed_pdf[position + 1:]


def test_a_forged_signature_value_is_rejected(signed_pdf: bytes, ca_certificate: x509.Certificate,
                                              tmp_path: Path) -> None:
    forged = forged_signature_value(signed_pdf)
    check = check_signed_pdf(forged, [ca_certificate])
    assert check.intact and not check.valid and not check.ok
    output = run_pdfsig(forged, tmp_path)
    assert "Signature is Valid." not in output and "Signature is Invalid." in output, output


def test_bytes_appended_after_signing_are_reported(signed_pdf: bytes, ca_certificate: x509.Certificate,
                                                   tmp_path: Path) -> None:
    extended = signed_pdf + b"\n% appended after signing\n"
    check = check_signed_pdf(extended, [ca_certificate])
    assert check.intact and check.valid and check.trusted
    assert not check.covers_whole_file and not check.ok
    assert any("bytes were added after the signed range" in problem for problem in check.problems)
    output = run_pdfsig(extended, tmp_path)
    assert "Not total document signed" in output and "Signature is Valid." in output, output


def test_an_incremental_update_changing_a_page_is_reported(signed_pdf: bytes, ca_certificate: x509.Certificate,
                                                           tmp_path: Path) -> None:
    writer = PdfWriter(io.BytesIO(signed_pdf), incremental=True)
    forged_page = DecodedStreamObject()
    forged_page.set_data(b"BT /F1 24 Tf 72 700 Td (Whole tumour volume: 0.0 cm3) Tj ET")
    writer.pages[0][NameObject("/Contents")] = writer._add_object(forged_page)
    buffer = io.BytesIO()
    writer.write(buffer)
    updated = buffer.getvalue()
    assert updated.startswith(signed_pdf)

    check = check_signed_pdf(updated, [ca_certificate])
    assert check.intact and not check.covers_whole_file and not check.ok
    assert any("changed after signing" in problem for problem in check.problems)
    assert "Not total document signed" in run_pdfsig(updated, tmp_path)


def test_another_ca_is_not_trusted(signed_pdf: bytes) -> None:
    other_key = rsa_key()
    other_ca = issue(other_key, other_key, None, common_name="OncoFlow development CA", ca=True)
    check = check_signed_pdf(signed_pdf, [other_ca])
    assert check.intact and check.valid and check.covers_whole_file
    assert not check.trusted and not check.ok
    assert any("not trusted" in problem for problem in check.problems)


def test_an_unsigned_pdf_is_reported(original_pdf: bytes, ca_certificate: x509.Certificate) -> None:
    check = check_signed_pdf(original_pdf, [ca_certificate])
    assert not check.signed and not check.ok
    assert check.problems == ("the PDF is not signed",)


@pytest.mark.parametrize("damage", ["not a pdf", "truncated", "contents garbage"])
def test_a_broken_pdf_is_reported_without_raising(signed_pdf: bytes, ca_certificate: x509.Certificate,
                                                  damage: str) -> None:
    if damage == "not a pdf":
        pdf = b"%!PS-Adobe-3.0\nnot a pdf"
    elif damage == "truncated":
        pdf = signed_pdf[: len(signed_pdf) * 2 // 3]
    else:
        _, length, start, _ = byte_range(signed_pdf)
        pdf = signed_pdf[:length + 1] + b"4" * (start - length - 2) + signed_pdf[start - 1:]
    check = check_signed_pdf(pdf, [ca_certificate])
    assert not check.ok and check.problems
