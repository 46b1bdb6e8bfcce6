"""OncoFlow: brain tumour tracking across MRI follow-ups, inside the PACS.

The domain, one sub-package per concern (``core``, ``pacs``, ``dicom``, ``measure``, ``security``, ``report``,
``pipeline``, ``api``, ``services``, ``phantoms``); ``docs/architecture.md`` is the map. The components sit
beside it: ``oncoflow_plugin`` (Orthanc), ``oncoflow_inference`` (the KServe v2 worker),
``oncoflow_registration`` and ``oncoflow_rag``.
"""

__version__ = "0.1.0"
