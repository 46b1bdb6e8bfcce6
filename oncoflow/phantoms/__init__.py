"""Test data: brain-tumour phantoms planted into real anatomy, their DICOM series, and longitudinal phantom patients."""
