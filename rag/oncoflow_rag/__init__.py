"""Retrieval over a patient's notes for the report's clinical summary: the clinical-report issue builds it.

Nothing here yet; the package exists so the component has its place in the layout.
"""
