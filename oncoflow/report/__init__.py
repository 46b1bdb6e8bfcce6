"""The clinical report: its layout, figures, PAdES signature, signing certificates and the signed-PDF check."""
