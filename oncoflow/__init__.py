"""OncoFlow: brain tumour tracking across MRI follow-ups, inside the PACS.

This package holds what several components share (configuration, volume
geometry, phantoms). Each component has its own package beside it:
``oncoflow_plugin`` (Orthanc), ``oncoflow_inference`` (the KServe v2 worker).
"""

__version__ = "0.1.0"
