"""``docs/dicom-conformance.md`` against a running OncoFlow: what it negotiates, and how it is configured.

The statement is the oracle. Its SOP class and transfer syntax tables are proposed to the stack's Orthanc
in real associations (pynetdicom, as a configured store peer) and each presentation context must be
accepted exactly when the statement says so; the "decoded" column is asked of pydicom's own decoders; the
AE table is compared with the acceptor's A-ASSOCIATE-AC and with the configuration OncoFlow writes for
Orthanc. The objects OncoFlow makes are checked against sections 6.1 and 6.2 in
``tests/test_e2e_report.py`` (a processed follow-up read back from the PACS).
"""

from __future__ import annotations

import pytest
from pydicom.pixels import get_decoder
from pynetdicom import AE, build_context
from pynetdicom.presentation import PresentationContext

from oncoflow.core.config import load_settings
from oncoflow.services.orthanc_config import orthanc_configuration

from .conformance_statement import table_after, yes
from .conftest import TEST_AET, Stack

EXPLICIT_LITTLE = "1.2.840.10008.1.2.1"
MAX_CONTEXTS = 128  # odd presentation context IDs 1..255 (PS3.8 9.3.2.2)


def properties(heading: str) -> dict[str, str]:
    return {row["property"].lower(): row["value"] for row in table_after(heading)}


def negotiate(stack: Stack, contexts: list[PresentationContext], calling: str = TEST_AET,
              called: str | None = None) -> tuple[set[tuple[str, str]], dict[str, object]] | None:
    """The (SOP class, transfer syntax) pairs Orthanc accepts, and its A-ASSOCIATE-AC's implementation items; None
    when the association is rejected."""
    ae = AE(ae_title=calling)
    ae.requested_contexts = contexts
    association = ae.associate("127.0.0.1", stack.settings.dicom_port, ae_title=called or stack.settings.aet)
    if not association.is_established:
        return None
    try:
        accepted = {(str(c.abstract_syntax), str(c.transfer_syntax[0])) for c in association.accepted_contexts}
        acceptor = association.acceptor
        return accepted, {"class": acceptor.implementation_class_uid, "version": acceptor.implementation_version_name,
                          "pdu": acceptor.maximum_length}
    finally:
        association.release()


def test_each_stated_sop_class_and_transfer_syntax_is_negotiated_as_stated(stack: Stack) -> None:
    sop_classes = table_after("### 2.3")
    syntaxes = table_after("### 2.4")
    storage = [row for row in sop_classes if "Storage" in row["sop class"]]
    services = [row for row in sop_classes if "Storage" not in row["sop class"]]
    assert len(storage) >= 8 and len(services) >= 7 and len(syntaxes) >= 15
    pairs = [(s["uid"], t["uid"]) for s in storage for t in syntaxes]
    pairs += [(s["uid"], EXPLICIT_LITTLE) for s in services]
    accepted: set[tuple[str, str]] = set()
    for start in range(0, len(pairs), MAX_CONTEXTS):
        answer = negotiate(stack, [build_context(*pair) for pair in pairs[start:start + MAX_CONTEXTS]])
        assert answer is not None, "the store peer's association was rejected"
        accepted |= answer[0]
    syntax_accepted = {t["uid"]: yes(t["accepted"]) for t in syntaxes}
    wrong = []
    for row in storage:
        for uid, syntax_ok in syntax_accepted.items():
            expected = yes(row["accepted"]) and syntax_ok
            if ((row["uid"], uid) in accepted) != expected:
                wrong.append(f"{row['sop class']} in {uid}: stated {expected}")
    for row in services:
        if ((row["uid"], EXPLICIT_LITTLE) in accepted) != yes(row["accepted"]):
            wrong.append(f"{row['sop class']}: stated {row['accepted']}")
    assert not wrong, wrong


def test_the_decoded_column_is_what_pydicom_can_decode_here() -> None:
    wrong = []
    for row in table_after("### 2.4"):
        try:
            available = get_decoder(row["uid"]).is_available
        except NotImplementedError:  # pydicom has no decoder for that syntax at all
            available = False
        if available != yes(row["decoded by oncoflow"]):
            wrong.append(f"{row['transfer syntax']}: stated {row['decoded by oncoflow']}, pydicom says {available}")
    assert not wrong, wrong


def test_the_ae_table_is_the_acceptors_answer_and_orthancs_configuration(stack: Stack) -> None:
    stated = properties("### 2.2")
    answer = negotiate(stack, [build_context("1.2.840.10008.1.1", EXPLICIT_LITTLE)])
    assert answer is not None
    assert answer[1]["class"] == stated["implementation class uid"]
    assert answer[1]["version"] == stated["implementation version name"]
    assert f"{answer[1]['pdu']} bytes" == stated["maximum pdu length received"]
    config = orthanc_configuration(stack.settings)
    assert stated["simultaneous associations"].startswith(f"{config['DicomThreadsCount']} ")
    assert stated["scp timeout"].startswith(f"{config['DicomScpTimeout']} s")
    assert config["MaximumPduLength"] == answer[1]["pdu"]
    assert stated["ae title"] == f"ONCOFLOW_AET (default {load_settings({}).aet})"
    assert config["DicomCheckCalledAet"] is True and config["UnknownSopClassAccepted"] is False


def test_other_called_and_calling_ae_titles_are_rejected_as_stated(stack: Stack) -> None:
    echo = [build_context("1.2.840.10008.1.1", EXPLICIT_LITTLE)]
    assert negotiate(stack, echo) is not None  # the store peer itself is accepted
    assert negotiate(stack, echo, called="NOT" + stack.settings.aet[:13]) is None
    assert negotiate(stack, echo, calling="NOBODYKNOWN") is None
    assert "rejected" in properties("### 2.2")["called ae title checked"]


def test_the_character_set_table_is_orthancs_configuration(stack: Stack) -> None:
    stated = properties("## 4")
    config = orthanc_configuration(stack.settings)
    assert stated["assumed when an instance has none"] == f"Orthanc's DefaultEncoding: {config['DefaultEncoding']}"


@pytest.mark.parametrize("heading", ["### 2.2", "### 2.3", "### 2.4", "## 4", "### 6.1", "### 6.2"])
def test_every_checked_table_is_present(heading: str) -> None:
    assert table_after(heading)
