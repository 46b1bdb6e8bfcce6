"""Compressed input end to end: a full-head phantom series compressed by a real encoder, C-STOREd with storescu
proposing that transfer syntax, stored as it came (Orthanc's ``TransferSyntax`` metadata), decoded by OncoFlow,
and a SEG read back and checked against the phantom's truth.

The encoders are dcmtk 3.6.7's ``dcmcjpls`` (JPEG-LS lossless), ``dcmcjpeg`` (JPEG lossless, process 14
selection value 1, its default ``+e1``) and ``dcmcrle`` (RLE lossless); dcmtk 3.6.7 has no JPEG 2000 encoder,
so JPEG 2000 lossless is encoded by OpenJPEG through pydicom's ``Dataset.compress`` (the pylibjpeg-openjpeg
plug-in). Lossless compression keeps every SOP Instance UID, so the SEG refers to the series as written.

A transfer syntax Orthanc accepts but no installed decoder reads (JPEG 2000 Part 2 multi-component, a real
OpenJPEG codestream relabelled) fails the study's job with the syntax named, Orthanc and the worker unharmed;
JPIP (pixel data left on a JPIP server) is refused at association.
"""

from __future__ import annotations

import io
import json
import subprocess
from collections.abc import Callable
from pathlib import Path

import pydicom
import pytest
from pydicom.uid import JPEG2000Lossless

from oncoflow.phantoms.tumour_phantom import Phantom, make_phantom
from oncoflow.services.stack import http_get

from .conftest import TEST_AET, Stack, required_tool, unique_study, write_series
from .seg_oracle import dice, segment_mask

pytestmark = pytest.mark.e2e

PHANTOM_SHAPE = (40, 64, 64)  # as tests/test_e2e_pipeline.py: a full head (scalp, skull, eyes) with a tumour
J2K_MULTI_COMPONENT_LOSSLESS = "1.2.840.10008.1.2.4.92"
JPIP_REFERENCED = "1.2.840.10008.1.2.4.94"


@pytest.fixture(scope="module")
def phantom() -> Phantom:
    return make_phantom(9101, shape=PHANTOM_SHAPE)


def dcmtk_encoder(tool: str) -> Callable[[Path, Path], None]:
    """Compress one Part-10 file with a dcmtk command-line encoder (its default, lossless options)."""
    def encode(source: Path, target: Path) -> None:
        subprocess.run([required_tool(tool), str(source), str(target)], check=True, capture_output=True, timeout=60)
    return encode


def openjpeg_lossless(source: Path, target: Path) -> None:
    """JPEG 2000 lossless by OpenJPEG (pydicom's ``Dataset.compress``, pylibjpeg-openjpeg's encoder)."""
    ds = pydicom.dcmread(source)
    ds.compress(JPEG2000Lossless, encoding_plugin="pylibjpeg", generate_instance_uid=False)  # lossless: same UID
    ds.save_as(target, enforce_file_format=True)


def relabelled_openjpeg(syntax: str) -> Callable[[Path, Path], None]:
    """JPEG 2000 lossless by OpenJPEG (:func:`openjpeg_lossless`), its Transfer Syntax UID (0002,0010) then
    relabelled ``syntax``."""
    def encode(source: Path, target: Path) -> None:
        openjpeg_lossless(source, target)
        ds = pydicom.dcmread(target)
        ds.file_meta.TransferSyntaxUID = syntax
        ds.save_as(target, enforce_file_format=True)
    return encode


def write_compressed(directory: Path, phantom: Phantom, name: str,
                     encode: Callable[[Path, Path], None]) -> tuple[str, list[str]]:
    """The phantom as a new study, every slice compressed by ``encode`` into ``directory/name``; returns the
    StudyInstanceUID and the SOP Instance UIDs in slice order."""
    study = unique_study(name)
    datasets = write_series(directory / "source", phantom.volume, study)
    (directory / name).mkdir()
    for source in sorted((directory / "source").iterdir()):
        encode(source, directory / name / source.name)
    return study.study_instance_uid, [str(ds.SOPInstanceUID) for ds in datasets]


def stored_transfer_syntaxes(stack: Stack, study_uid: str, sop_instance_uids: list[str]) -> set[str]:
    """The transfer syntaxes Orthanc stored these instances of the study in (``/instances/{id}/metadata/
    TransferSyntax``); fails unless Orthanc holds every one of them."""
    _, instances = stack.get(f"/studies/{stack.study_id(study_uid)}/instances")
    inputs = [i for i in instances if i["MainDicomTags"]["SOPInstanceUID"] in sop_instance_uids]
    assert len(inputs) == len(sop_instance_uids)
    syntaxes = set()
    for instance in inputs:
        status, syntax = stack.request("GET", f"/instances/{instance['ID']}/metadata/TransferSyntax")
        assert status == 200
        syntaxes.add(syntax.decode())
    return syntaxes


# (test id, transfer syntax UID, encoder, storescu's option that proposes that syntax)
LOSSLESS_CASES = [
    ("jpeg-ls", "1.2.840.10008.1.2.4.80", dcmtk_encoder("dcmcjpls"), "-xt"),
    ("jpeg-lossless-sv1", "1.2.840.10008.1.2.4.70", dcmtk_encoder("dcmcjpeg"), "-xs"),
    ("rle", "1.2.840.10008.1.2.5", dcmtk_encoder("dcmcrle"), "-xr"),
    ("jpeg2000-lossless", "1.2.840.10008.1.2.4.90", openjpeg_lossless, "-xv"),
]


@pytest.mark.parametrize(("name", "syntax", "encode", "propose"), LOSSLESS_CASES, ids=[c[0] for c in LOSSLESS_CASES])
def test_compressed_series_is_decoded_and_segmented(stack: Stack, phantom: Phantom, tmp_path: Path,
                                                    name: str, syntax: str, encode: Callable[[Path, Path], None],
                                                    propose: str) -> None:
    study_uid, sources = write_compressed(tmp_path, phantom, f"compressed-{name}", encode)
    written = {str(pydicom.dcmread(p, stop_before_pixels=True).file_meta.TransferSyntaxUID)
               for p in (tmp_path / f"compressed-{name}").iterdir()}
    assert written == {syntax}
    stack.push(tmp_path / f"compressed-{name}", propose)
    job = stack.wait_job(study_uid, timeout_s=300)
    assert job["state"] == "done", job["error"]
    # Orthanc kept what storescu sent (no decompression on the way): OncoFlow's decoder read this syntax
    assert stored_transfer_syntaxes(stack, study_uid, sources) == {syntax}
    assert job["outputs"]["input_images"] == PHANTOM_SHAPE[0]

    # the SEGs read back (pydicom alone) against the phantom's own masks
    outputs = job["outputs"]
    brain = segment_mask(stored_instance(stack, outputs["brain_extraction"]["seg_sop_instance_uid"]), sources)
    assert dice(brain, phantom.brain_mask) >= 0.85
    ensemble = stored_instance(stack, outputs["ensemble_seg_sop_instance_uid"])
    assert ensemble.StudyInstanceUID == study_uid
    assert dice(segment_mask(ensemble, sources), phantom.tumour_mask) >= 0.75


def test_undecodable_syntax_fails_the_job_naming_it(stack: Stack, phantom: Phantom, tmp_path: Path) -> None:
    """A real OpenJPEG codestream labelled JPEG 2000 Part 2 multi-component (lossless), which Orthanc accepts
    (``Jpeg2000TransferSyntaxAccepted``) and pydicom 3.0 has no decoder for; storescu proposes it from a
    configuration file of its own (it has no option for that syntax)."""
    study_uid, sources = write_compressed(tmp_path, phantom, "compressed-undecodable",
                                         relabelled_openjpeg(J2K_MULTI_COMPONENT_LOSSLESS))
    config = propose_only(tmp_path / "storescu.cfg", J2K_MULTI_COMPONENT_LOSSLESS)
    stack.push(tmp_path / "compressed-undecodable", "-xf", str(config), "Profile")
    job = stack.wait_job(study_uid, timeout_s=300)
    assert job["state"] == "failed", job
    assert ("pixel data in JPEG 2000 Part 2 Multi-component Image Compression (Lossless Only) "
            f"({J2K_MULTI_COMPONENT_LOSSLESS}) cannot be decoded here") in job["error"], job["error"]
    assert stored_transfer_syntaxes(stack, study_uid, sources) == {J2K_MULTI_COMPONENT_LOSSLESS}
    assert stack.seg_series(study_uid) == []
    assert http_get(f"{stack.settings.orthanc_url}/oncoflow/health")[0] == 200
    assert http_get(f"{stack.settings.worker_http_url}/v2/health/live")[0] == 200


def test_jpip_is_refused_at_association(stack: Stack, phantom: Phantom, tmp_path: Path) -> None:
    """JPIP Referenced carries no pixel data (only a JPIP server's URL): Orthanc refuses the presentation
    context (``JpipTransferSyntaxAccepted`` false), so nothing is stored and no job starts."""
    study_uid, _ = write_compressed(tmp_path, phantom, "compressed-jpip", relabelled_openjpeg(JPIP_REFERENCED))
    config = propose_only(tmp_path / "storescu.cfg", JPIP_REFERENCED)
    result = subprocess.run(["storescu", "-aet", TEST_AET, "-aec", stack.settings.aet, "-xf", str(config), "Profile",
                             "+sd", "127.0.0.1", str(stack.settings.dicom_port), str(tmp_path / "compressed-jpip")],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode != 0 and "No Acceptable Presentation Contexts" in result.stderr, result.stderr
    assert stack.studies_with_uid(study_uid) == []
    assert stack.job(study_uid) is None


def propose_only(path: Path, syntax: str) -> Path:
    """A storescu configuration file (dcmtk's asconfig format) whose profile ``Profile`` proposes MR Image
    Storage in ``syntax`` alone."""
    path.write_text("[[TransferSyntaxes]]\n[Syntax]\nTransferSyntax1 = " + syntax + "\n"
                    "[[PresentationContexts]]\n[Contexts]\nPresentationContext1 = MRImageStorage\\Syntax\n"
                    "[[Profiles]]\n[Profile]\nPresentationContexts = Contexts\n")
    return path


def stored_instance(stack: Stack, sop_instance_uid: str) -> pydicom.Dataset:
    """The instance Orthanc holds with this SOP Instance UID (``/tools/lookup``), parsed by pydicom."""
    status, found = stack.request("POST", "/tools/lookup", sop_instance_uid.encode())
    assert status == 200
    [instance] = [m["ID"] for m in json.loads(found) if m["Type"] == "Instance"]
    return pydicom.dcmread(io.BytesIO(stack.get_bytes(f"/instances/{instance}/file")))
