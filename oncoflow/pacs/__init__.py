"""Orthanc's REST API as the domain reaches it: in Orthanc's process (``orthanc.RestApi*``) or over HTTP."""
