"""A patient's uploaded clinical notes: stored, searched by meaning, and erased on request.

Layout of the store directory:

* ``notes.sqlite3``: the documents (the :class:`StoredDocument` fields) and their chunks' text, plus the store's
  random 256-bit pseudonymisation key. Opened with ``secure_delete`` so erased text is overwritten on disk.
* ``chroma/``: a chromadb persistent store holding only vectors, one collection per patient, with chunk IDs
  and the patient's pseudonym as metadata (no text, no filename).

Patients are known on disk only by a pseudonym, the HMAC-SHA256 of the PatientID under the store's key, so a
PatientID (PHI) never appears in clear and cannot be recovered by hashing candidate IDs without the key.

Isolation between patients holds by construction: a search embeds the query and queries the one collection
named after the patient's pseudonym, filtered on the same pseudonym; each hit's metadata is checked again and
its text is read with a SQL query keyed on the pseudonym. Embeddings come from :class:`LocalEmbedder` and are
passed to chromadb explicitly; the collections have no embedding function, so chromadb never loads (or
downloads) one. Telemetry is off. All methods may be called from several threads.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import shutil
import sqlite3
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from .document_upload import UploadedDocument
from .local_embedding import LocalEmbedder
from .passage import Passage
from .text_chunks import chunk_text

logger = logging.getLogger(__name__)

CHUNK_MAX_CHARS = 800
CHUNK_OVERLAP_CHARS = 150
_DATABASE_NAME = "notes.sqlite3"
_CHROMA_DIR_NAME = "chroma"
_SCHEMA_VERSION = 1
_SCHEMA = """
CREATE TABLE IF NOT EXISTS store_key (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    key BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS documents (
    patient TEXT NOT NULL,          -- pseudonym: HMAC-SHA256 of the PatientID (hex)
    document_id TEXT NOT NULL,
    filename TEXT NOT NULL,
    media_type TEXT NOT NULL,
    pages INTEGER NOT NULL,
    chunks INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    size_bytes INTEGER NOT NULL,
    added_at TEXT NOT NULL,
    PRIMARY KEY (patient, document_id)
);
CREATE TABLE IF NOT EXISTS chunks (
    patient TEXT NOT NULL,
    document_id TEXT NOT NULL,
    chunk_index INTEGER NOT NULL,
    start_char INTEGER NOT NULL,
    text TEXT NOT NULL,
    PRIMARY KEY (patient, document_id, chunk_index),
    FOREIGN KEY (patient, document_id) REFERENCES documents (patient, document_id) ON DELETE CASCADE
);
"""
_DOCUMENT_COLUMNS = "document_id, filename, media_type, pages, chunks, sha256, size_bytes, added_at"


@dataclass(frozen=True)
class StoredDocument:
    """A document in a patient's notes."""

    document_id: str  # hex digest, stable across restarts; the same bytes for the same patient give the same ID
    filename: str
    media_type: str  # "application/pdf" | "text/plain"
    pages: int
    chunks: int  # number of indexed chunks
    sha256: str  # hex digest of the uploaded bytes
    size_bytes: int
    added_at: str  # ISO 8601 UTC, e.g. "2025-01-31T09:30:00Z"


class PatientNotes:
    """Per-patient notes store in ``directory`` (created if needed, mode 0700).

    ``embedder`` defaults to a :class:`LocalEmbedder` created on the first :meth:`add` or :meth:`search`
    that needs it, so listing and erasing work even when the model cannot be loaded.
    """

    def __init__(self, directory: Path, embedder: LocalEmbedder | None = None) -> None:
        import chromadb
        from chromadb.config import Settings

        self.directory = Path(directory).expanduser().resolve()
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._embedder = embedder
        self._embedder_lock = threading.Lock()
        self._db = sqlite3.connect(self.directory / _DATABASE_NAME, check_same_thread=False, isolation_level=None,
                                   timeout=30.0)
        self._db.execute("PRAGMA secure_delete = ON")
        self._db.execute("PRAGMA foreign_keys = ON")
        with self._transaction():
            version = self._db.execute("PRAGMA user_version").fetchone()[0]
            if version > _SCHEMA_VERSION:
                raise RuntimeError(f"{self.directory / _DATABASE_NAME} has schema version {version}; this OncoFlow "
                                   f"knows up to {_SCHEMA_VERSION}")
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    self._db.execute(statement)
            self._db.execute(f"PRAGMA user_version = {_SCHEMA_VERSION}")
            self._db.execute("INSERT OR IGNORE INTO store_key (id, key) VALUES (1, ?)", (secrets.token_bytes(32),))
        self._key: bytes = self._db.execute("SELECT key FROM store_key WHERE id = 1").fetchone()[0]
        self._chroma_dir = self.directory / _CHROMA_DIR_NAME
        self._client = chromadb.PersistentClient(
            path=str(self._chroma_dir), settings=Settings(anonymized_telemetry=False, allow_reset=False))

    def add(self, patient_id: str, document: UploadedDocument) -> StoredDocument:
        """Store ``document`` in the patient's notes and index its chunks; return its record.

        Uploading the same bytes again for the same patient returns the existing record (the first upload's
        filename and time) and stores nothing.
        """
        patient = self._pseudonym(patient_id)
        document_id = hashlib.sha256(f"{patient}:{document.sha256}".encode("ascii")).hexdigest()[:32]
        with self._lock:
            existing = self._stored(patient, document_id)
        if existing is not None:
            return existing
        chunks = chunk_text(document.text, CHUNK_MAX_CHARS, CHUNK_OVERLAP_CHARS)
        if not chunks:
            raise ValueError(f"{document.filename} has no text to store")
        vectors = self._embedding_model().embed([chunk.text for chunk in chunks])  # slow part: outside the lock
        stored = StoredDocument(document_id, document.filename, document.media_type, document.pages, len(chunks),
                                document.sha256, document.size_bytes,
                                datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"))
        ids = [f"{document_id}-{chunk.index}" for chunk in chunks]
        with self._lock:
            existing = self._stored(patient, document_id)  # a concurrent upload of the same file won the race
            if existing is not None:
                return existing
            collection = self._collection(patient, create=True)
            try:
                with self._transaction():
                    self._db.execute(f"INSERT INTO documents (patient, {_DOCUMENT_COLUMNS}) VALUES (?{', ?' * 8})",
                                     (patient, *_document_row(stored)))
                    self._db.executemany(
                        "INSERT INTO chunks (patient, document_id, chunk_index, start_char, text) "
                        "VALUES (?, ?, ?, ?, ?)",
                        [(patient, document_id, chunk.index, chunk.start_char, chunk.text) for chunk in chunks])
                    self._add_vectors(collection, patient, document_id, ids, vectors)
            except BaseException:
                try:
                    collection.delete(ids=ids)
                except Exception:
                    logger.exception("could not remove the vectors of a failed upload")
                raise
        return stored

    def documents(self, patient_id: str) -> list[StoredDocument]:
        """The patient's documents, oldest first; [] when there are none."""
        patient = self._pseudonym(patient_id)
        with self._lock:
            rows = self._db.execute(f"SELECT {_DOCUMENT_COLUMNS} FROM documents WHERE patient = ? "
                                    "ORDER BY rowid", (patient,)).fetchall()
        return [StoredDocument(*row) for row in rows]

    def search(self, patient_id: str, query: str, k: int = 5) -> list[Passage]:
        """The (at most) ``k`` passages of the patient's notes closest in meaning to ``query``, closest first.

        Only this patient's notes are searched. [] when the patient has no notes or the query is blank.
        """
        if k < 1:
            raise ValueError(f"k must be positive, got {k}")
        patient = self._pseudonym(patient_id)
        if not query.strip():
            return []
        with self._lock:
            if self._db.execute("SELECT 1 FROM documents WHERE patient = ? LIMIT 1", (patient,)).fetchone() is None:
                return []
        vector = self._embedding_model().embed([query])
        with self._lock:
            collection = self._collection(patient, create=False)
            if collection is None:
                return []
            count = collection.count()
            if count == 0:
                return []
            result = collection.query(query_embeddings=vector, n_results=min(k, count), where={"patient": patient},
                                      include=["metadatas", "distances"])
            passages: list[Passage] = []
            for metadata, distance in zip(result["metadatas"][0], result["distances"][0], strict=True):
                if metadata is None or metadata.get("patient") != patient:  # second guard; cannot happen
                    logger.error("a search returned a vector of another patient; it was dropped")
                    continue
                row = self._db.execute(
                    "SELECT d.filename, c.text FROM chunks AS c JOIN documents AS d "
                    "ON d.patient = c.patient AND d.document_id = c.document_id "
                    "WHERE c.patient = ? AND c.document_id = ? AND c.chunk_index = ?",
                    (patient, metadata["document_id"], metadata["chunk_index"])).fetchone()
                if row is None:  # a vector left by an interrupted upload or erase: no text, skip it
                    continue
                passages.append(Passage(str(metadata["document_id"]), row[0], int(metadata["chunk_index"]), row[1],
                                        float(distance)))
        return passages

    def erase(self, patient_id: str) -> int:
        """Erase the patient's documents, chunks and vectors; return the number of documents erased."""
        patient = self._pseudonym(patient_id)
        with self._lock:
            with self._transaction():
                erased = self._db.execute("SELECT COUNT(*) FROM documents WHERE patient = ?", (patient,)).fetchone()[0]
                self._db.execute("DELETE FROM documents WHERE patient = ?", (patient,))  # chunks: ON DELETE CASCADE
            self._drop_collection(patient)
        return erased

    def close(self) -> None:
        """Release the files: the SQLite connection and this store's reference to chromadb's shared client."""
        with self._lock:
            self._client.close()
            self._db.close()

    def _pseudonym(self, patient_id: str) -> str:
        """HMAC-SHA256 (hex) of the PatientID under the store's key; DICOM padding spaces are not significant."""
        if not isinstance(patient_id, str) or not patient_id.strip(" "):
            raise ValueError("a patient ID must be a non-empty string")
        return hmac.new(self._key, patient_id.strip(" ").encode("utf-8"), hashlib.sha256).hexdigest()

    def _embedding_model(self) -> LocalEmbedder:
        with self._embedder_lock:
            if self._embedder is None:
                self._embedder = LocalEmbedder()
            return self._embedder

    def _stored(self, patient: str, document_id: str) -> StoredDocument | None:
        row = self._db.execute(f"SELECT {_DOCUMENT_COLUMNS} FROM documents WHERE patient = ? AND document_id = ?",
                               (patient, document_id)).fetchone()
        return None if row is None else StoredDocument(*row)

    def _collection(self, patient: str, *, create: bool):  # -> chromadb Collection | None
        name = _collection_name(patient)
        if create:
            return self._client.get_or_create_collection(name, embedding_function=None,
                                                         configuration={"hnsw": {"space": "cosine"}})
        from chromadb.errors import NotFoundError

        try:
            return self._client.get_collection(name, embedding_function=None)
        except NotFoundError:
            return None

    def _add_vectors(self, collection, patient: str, document_id: str, ids: list[str], vectors: np.ndarray) -> None:
        batch = max(1, self._client.get_max_batch_size())
        for start in range(0, len(ids), batch):
            stop = start + batch
            collection.upsert(ids=ids[start:stop], embeddings=vectors[start:stop],
                              metadatas=[{"patient": patient, "document_id": document_id, "chunk_index": index}
                                         for index in range(start, min(stop, len(ids)))])

    def _drop_collection(self, patient: str) -> None:
        """Delete the patient's collection and its vector files (chromadb leaves those on disk)."""
        from chromadb.errors import NotFoundError

        collection = self._collection(patient, create=False)
        if collection is None:
            return
        segments = self._vector_segments(str(collection.id))
        with suppress(NotFoundError):  # erased meanwhile by another process
            self._client.delete_collection(_collection_name(patient))
        for segment in segments:
            path = self._chroma_dir / segment
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)

    def _vector_segments(self, collection_id: str) -> list[str]:
        """IDs (= directory names) of a collection's vector segments, read from chromadb's SQLite catalogue."""
        try:
            database = sqlite3.connect(f"file:{self._chroma_dir / 'chroma.sqlite3'}?mode=ro", uri=True, timeout=30.0)
            try:
                rows = database.execute("SELECT id FROM segments WHERE collection = ? AND scope = 'VECTOR'",
                                        (collection_id,)).fetchall()
            finally:
                database.close()
        except sqlite3.Error as exc:
            logger.warning("cannot list the vector files of an erased collection; they stay on disk: %s", exc)
            return []
        return [str(uuid.UUID(row[0])) for row in rows if _is_uuid(row[0])]

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")


def _collection_name(patient: str) -> str:
    """The chromadb collection of a patient pseudonym (160 bits of it: collisions are not a concern)."""
    return f"patient-{patient[:40]}"


def _document_row(document: StoredDocument) -> tuple[str, str, str, int, int, str, int, str]:
    return (document.document_id, document.filename, document.media_type, document.pages, document.chunks,
            document.sha256, document.size_bytes, document.added_at)


def _is_uuid(value: object) -> bool:
    try:
        uuid.UUID(str(value))
    except ValueError:
        return False
    return True
