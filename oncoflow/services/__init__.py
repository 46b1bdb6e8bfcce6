"""Processes OncoFlow starts and configures: the stack and its CLI, Orthanc's configuration, Keycloak, PostgreSQL and
the OHIF viewer's assets.
"""
