"""The patients' notes store (:class:`oncoflow_rag.patient_notes.PatientNotes`) on a thread of its own.

chromadb's native code needs a deeper stack than Orthanc's HTTP threads (civetweb workers)
have: called from a REST callback it overflows the stack and takes Orthanc down (measured:
SIGSEGV in ``chromadb_rust_bindings`` on an upload). Every call therefore runs on one Python
thread created with a 16 MiB stack, which also serialises the store's use of the embedding
model. The store and its model are created on that thread on first use.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from oncoflow_rag.document_upload import UploadedDocument
from oncoflow_rag.passage import Passage
from oncoflow_rag.patient_notes import StoredDocument

T = TypeVar("T")
STACK_BYTES = 16 * 1024 * 1024


class NotesService:
    """Thread-safe facade: the same methods as ``PatientNotes``, each run on the notes thread."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._notes: Any = None
        previous = threading.stack_size(STACK_BYTES)
        try:
            self._executor = ThreadPoolExecutor(1, thread_name_prefix="oncoflow-notes")
            self._executor.submit(lambda: None).result()  # the thread is created now, with the large stack
        finally:
            threading.stack_size(previous)

    def _run(self, call: Callable[[Any], T]) -> T:
        return self._executor.submit(lambda: call(self._store())).result()

    def _store(self) -> Any:
        if self._notes is None:
            from oncoflow_rag.local_embedding import LocalEmbedder
            from oncoflow_rag.patient_notes import PatientNotes

            self._notes = PatientNotes(self.directory, LocalEmbedder())
        return self._notes

    def load(self) -> None:
        """Open the store and load the embedding model now (seconds), e.g. at Orthanc's start."""
        self._run(lambda notes: None)

    def add(self, patient_id: str, document: UploadedDocument) -> StoredDocument:
        return self._run(lambda notes: notes.add(patient_id, document))

    def documents(self, patient_id: str) -> list[StoredDocument]:
        return self._run(lambda notes: notes.documents(patient_id))

    def search(self, patient_id: str, query: str, k: int = 5) -> list[Passage]:
        return self._run(lambda notes: notes.search(patient_id, query, k))

    def erase(self, patient_id: str) -> int:
        return self._run(lambda notes: notes.erase(patient_id))

    def close(self) -> None:
        if self._notes is not None:
            self._run(lambda notes: notes.close())
        self._executor.shutdown(wait=True)
