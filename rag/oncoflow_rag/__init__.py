"""Retrieval over a patient's clinical notes, and the clinical summary written from it.

* :mod:`.document_upload`: validate an uploaded PDF/TXT note and extract its text;
* :mod:`.text_chunks`: split text into overlapping, sentence-aligned chunks;
* :mod:`.local_embedding`: all-MiniLM-L6-v2 from a local directory (no download);
* :mod:`.patient_notes`: chromadb store, one collection per patient, search and erase;
* :mod:`.clinical_findings`: the computed numbers a summary may state;
* :mod:`.clinical_summary`: deterministic summary, LLM summary (ollama) and the number check.
"""
