"""OncoFlow's REST routes as answers, independent of the server that sends them (Orthanc's plug-in does)."""
