"""The study pipeline and what runs it: the job store and queue, the job runner, the expert panel's client, the
patient timeline, the report stage, refinement and the pipeline worker.
"""
