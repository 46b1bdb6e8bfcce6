"""Who may do what, and the trace of it: tokens, the role table, request access, the audit log, pseudonyms, de-
identification, upload checks, Keycloak's admin API.
"""
