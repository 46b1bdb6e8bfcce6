"""DICOM in and out: series selection, volume building, and the SEG, SR, REG and Encapsulated PDF writers and
readers.
"""
