"""De-identify DICOM that leaves the PACS, and map results that come back.

Anything sent across the PACS boundary as DICOM (an export to a remote worker, a
research PACS) goes through :func:`deidentify`, which applies the Basic Application
Level Confidentiality Profile of DICOM PS3.15 Annex E (Table E.1-1) together with the
options listed below. UIDs are replaced consistently by HMAC-derived ``2.25.<int>``
UIDs, so a de-identified series keeps one Study, one Series and one Frame of
Reference UID, and references between instances (a SEG's source images) still
resolve. The :class:`ReidentificationMap` (SQLite under ``ONCOFLOW_HOME``, mode 0600)
records every replacement and never leaves the PACS; :func:`reidentify_references`
maps a result made on de-identified images (e.g. a SEG) back onto the originals.

Options applied, declared in DeidentificationMethodCodeSequence (0012,0064), CID 7050:

* 113100 Basic Application Confidentiality Profile.
* 113107 Retain Longitudinal Temporal Information with Modified Dates Option: every
  DA value and the date part of every DT value is shifted by a per-patient number of
  days (HMAC of the PatientID, -365..-1), so intervals between the studies of one
  patient survive; times (TM) are kept. LongitudinalTemporalInformationModified
  (0028,0303) is "MODIFIED". PatientBirthDate is not shifted but emptied (Z).
* 113108 Retain Patient Characteristics Option, restricted to PatientSex (needed
  for the report), PatientSize and PatientWeight; PatientAge is kept but capped at
  "090Y" (ages over 89 are identifying, as in HIPAA Safe Harbor). Every other
  characteristic of the option (ethnic group, smoking, pregnancy, allergies...) is removed.
* 113105 Clean Descriptors Option: the descriptors OncoFlow's series selection reads
  (StudyDescription, SeriesDescription, ProtocolName, SequenceName,
  ContrastBolusAgent) are kept only when they pass :func:`descriptor_is_clean`
  (restricted character set, no run of 5+ digits, no date, no word of the dataset's
  person names, IDs, institution or station); otherwise they are removed (X). Every other
  free-text descriptor (comments, PerformedProcedureStepDescription, ...) is removed.

The attribute table is :data:`ACTIONS` (keyword -> action code of Table E.1-1):

====  =======================================================================
Code  Meaning here
====  =======================================================================
D     replace by a dummy: PatientID -> the patient's pseudonym ``OF-XXXX-XXXX``
      (the same as :mod:`oncoflow.security.pseudonyms` with the same key), PatientName ->
      ``OF-XXXX-XXXX^``; StationName, DeviceSerialNumber -> "DEIDENTIFIED" (X/Z/D in the
      table; D keeps enhanced objects, where they are Type 1, valid)
Z     zero length: PatientBirthDate, AccessionNumber, StudyID,
      ReferringPhysicianName, ContentCreatorName, ...
X     remove: addresses, telephone numbers, other IDs and names, physicians,
      operators, institution, department, comments, request and procedure-step
      attributes, ...
K     keep (listed for clarity: PatientSex, PatientSize, PatientWeight)
C     clean: the descriptors above (kept if clean, else X)
A     PatientAge: kept, capped at 090Y
U     replace the UID consistently (all instance UIDs; see below)
====  =======================================================================

Attributes not in :data:`ACTIONS` are handled by rule, in every nested sequence item:

* UI: replaced (U) unless it identifies a class, not an instance: keywords ending in
  ``ClassUID`` or ``SyntaxUID``, coding-scheme and context UIDs, and any value that is a
  standard UID in pydicom's registry. Table E.1-1 lists ~50 UIDs with U; this rule
  covers them (Study/Series/SOP/FrameOfReference/Referenced.../Instance Creator/
  Dimension Organization/...) and any instance UID the table does not name.
* PN: emptied (Z) -- a person's name anywhere is identifying.
* DA / DT: shifted (Modified Dates Option), malformed values emptied.
* Private attributes (odd groups), public attributes outside pydicom's dictionary (their
  meaning is unknown), curve data (50xx,xxxx) and overlays (60xx,xxxx) are removed.
* File meta: SourceApplicationEntityTitle and the other AE titles / presentation
  addresses are removed; MediaStorageSOPInstanceUID follows SOPInstanceUID.
* Everything else is kept, in particular the geometry: ImagePositionPatient,
  ImageOrientationPatient, PixelSpacing, SliceThickness, SpacingBetweenSlices,
  Rows/Columns, RescaleSlope/Intercept and Pixel Data are untouched.

Pixel data are not cleaned (no Clean Pixel Data Option): a dataset with
BurnedInAnnotation (0028,0301) "YES" is refused with :class:`DeidentificationError`.
PatientIdentityRemoved (0012,0062) is "YES" and DeidentificationMethod (0012,0063)
names this module.

References: DICOM PS3.15 2024 Annex E, Table E.1-1 "Application Level Confidentiality
Profile Attributes" and E.3 "Profile Options"; PS3.16 CID 7050 "De-identification Method".
"""

from __future__ import annotations

import copy
import datetime
import hashlib
import hmac
import os
import re
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import UID_dictionary

from oncoflow.security.pseudonyms import patient_pseudonym

DEIDENTIFICATION_METHOD = "OncoFlow PS3.15 E.1 Basic, Clean Descriptors, Modified Dates"
DUMMY_TEXT = "DEIDENTIFIED"
MAX_AGE_YEARS = 90  # ages of 90 and over are written as "090Y"
SHIFT_RANGE_DAYS = 365  # shifts are in -365..-1

# (code value, code meaning) of CID 7050, scheme DCM
METHOD_CODES: tuple[tuple[str, str], ...] = (
    ("113100", "Basic Application Confidentiality Profile"),
    ("113105", "Clean Descriptors Option"),
    ("113107", "Retain Longitudinal Temporal Information Modified Dates Option"),
    ("113108", "Retain Patient Characteristics Option"),
)

_X = "X"
_Z = "Z"
_D = "D"
_K = "K"
_C = "C"
_A = "A"
_U = "U"

#: keyword -> action of PS3.15 Table E.1-1 (with the options above). See the module docstring.
ACTIONS: dict[str, str] = {
    # Patient identification and demographics
    "PatientName": _D,
    "PatientID": _D,
    "IssuerOfPatientID": _X,
    "IssuerOfPatientIDQualifiersSequence": _X,
    "PatientBirthDate": _Z,
    "PatientBirthTime": _X,
    "PatientBirthName": _X,
    "PatientMotherBirthName": _X,
    "PatientSex": _K,
    "PatientAge": _A,
    "PatientSize": _K,
    "PatientWeight": _K,
    "OtherPatientIDs": _X,
    "OtherPatientIDsSequence": _X,
    "OtherPatientNames": _X,
    "PatientAddress": _X,
    "PatientTelephoneNumbers": _X,
    "PatientTelecomInformation": _X,
    "CountryOfResidence": _X,
    "RegionOfResidence": _X,
    "EthnicGroup": _X,
    "Occupation": _X,
    "MilitaryRank": _X,
    "BranchOfService": _X,
    "PatientReligiousPreference": _X,
    "AdditionalPatientHistory": _X,
    "PatientComments": _X,
    "MedicalRecordLocator": _X,
    "MedicalAlerts": _X,
    "Allergies": _X,
    "SmokingStatus": _X,
    "PregnancyStatus": _X,
    "LastMenstrualDate": _X,
    "PatientState": _X,
    "SpecialNeeds": _X,
    "PatientInsurancePlanCodeSequence": _X,
    "PatientPrimaryLanguageCodeSequence": _X,
    "ReferencedPatientSequence": _X,
    "ReferencedPatientPhotoSequence": _X,
    "ResponsiblePerson": _X,
    "ResponsibleOrganization": _X,
    "PatientSexNeutered": _X,
    "CurrentPatientLocation": _X,
    "PatientInstitutionResidence": _X,
    "AdmissionID": _X,
    "AdmittingDiagnosesDescription": _X,
    "AdmittingDiagnosesCodeSequence": _X,
    # Study / visit / request
    "AccessionNumber": _Z,
    "IssuerOfAccessionNumberSequence": _X,
    "StudyID": _Z,
    "StudyDescription": _C,
    "StudyComments": _X,
    "ReferringPhysicianName": _Z,
    "ReferringPhysicianAddress": _X,
    "ReferringPhysicianTelephoneNumbers": _X,
    "ReferringPhysicianIdentificationSequence": _X,
    "ConsultingPhysicianName": _X,
    "ConsultingPhysicianIdentificationSequence": _X,
    "PhysiciansOfRecord": _X,
    "PhysiciansOfRecordIdentificationSequence": _X,
    "NameOfPhysiciansReadingStudy": _X,
    "PhysiciansReadingStudyIdentificationSequence": _X,
    "RequestingPhysician": _X,
    "RequestingService": _X,
    "RequestAttributesSequence": _X,
    "RequestedProcedureID": _X,
    "RequestedProcedureDescription": _X,
    "ReasonForTheRequestedProcedure": _X,
    "ReasonForStudy": _X,
    "ScheduledProcedureStepID": _X,
    "ScheduledProcedureStepDescription": _X,
    "PerformedProcedureStepID": _X,
    "PerformedProcedureStepDescription": _X,
    "PerformedProcedureStepStartDate": _X,
    "PerformedProcedureStepStartTime": _X,
    "PerformedProcedureStepEndDate": _X,
    "PerformedProcedureStepEndTime": _X,
    "PerformedLocation": _X,
    "PerformedStationName": _X,
    "PerformedStationAETitle": _X,
    "ScheduledStationName": _X,
    "ScheduledPerformingPhysicianName": _X,
    "ReferencedStudySequence": _X,
    "ReferencedPerformedProcedureStepSequence": _X,
    "FillerOrderNumberImagingServiceRequest": _X,
    "PlacerOrderNumberImagingServiceRequest": _X,
    "OrderEnteredBy": _X,
    "OrderEntererLocation": _X,
    "OrderCallbackPhoneNumber": _X,
    # Equipment and staff
    "InstitutionName": _X,
    "InstitutionAddress": _X,
    "InstitutionalDepartmentName": _X,
    "InstitutionCodeSequence": _X,
    "InstitutionalDepartmentTypeCodeSequence": _X,
    "StationName": _D,
    "DeviceSerialNumber": _D,
    "DeviceUID": _U,
    "PerformingPhysicianName": _X,
    "PerformingPhysicianIdentificationSequence": _X,
    "OperatorsName": _X,
    "OperatorIdentificationSequence": _X,
    "ContentCreatorName": _Z,
    "ContentCreatorIdentificationCodeSequence": _X,
    "VerifyingObserverName": _D,
    "PersonName": _D,
    "DetectorID": _X,
    "GantryID": _X,
    "PlateID": _X,
    "CassetteID": _X,
    # Series / image descriptors
    "SeriesDescription": _C,
    "ProtocolName": _C,
    "SequenceName": _C,
    "ContrastBolusAgent": _C,
    "ImageComments": _X,
    "AcquisitionComments": _X,
    "DerivationDescription": _X,
    "FrameComments": _X,
    "ClinicalTrialSponsorName": _X,
    "ClinicalTrialSiteName": _X,
    "ClinicalTrialSubjectID": _X,
    "ClinicalTrialSubjectReadingID": _X,
    "TextString": _X,
    "TextComments": _X,
    "InterpretationText": _X,
    "ImpressionsInterpretation": _X,
    "DigitalSignaturesSequence": _X,
    "OriginalAttributesSequence": _X,
    "ModifiedAttributesSequence": _X,
    "DataSetTrailingPadding": _X,
    # UIDs (the rule in the docstring covers UIDs not listed)
    "StudyInstanceUID": _U,
    "SeriesInstanceUID": _U,
    "SOPInstanceUID": _U,
    "FrameOfReferenceUID": _U,
    "ReferencedSOPInstanceUID": _U,
    "ReferencedFrameOfReferenceUID": _U,
    "InstanceCreatorUID": _U,
    "DimensionOrganizationUID": _U,
    "SynchronizationFrameOfReferenceUID": _U,
    "IrradiationEventUID": _U,
    "UID": _U,
}

# UIs that identify a definition, not an instance: kept
_KEPT_UID_KEYWORDS = frozenset({
    "CodingSchemeUID", "ContextUID", "ContextGroupExtensionCreatorUID", "MappingResourceUID",
    "PrivateInformationCreatorUID", "CodingSchemeRegistry",
})
# file meta attributes that may name the sending site: removed
_FILE_META_REMOVED = frozenset({
    "SourceApplicationEntityTitle", "SendingApplicationEntityTitle", "ReceivingApplicationEntityTitle",
    "SourcePresentationAddress", "SendingPresentationAddress", "ReceivingPresentationAddress",
    "PrivateInformationCreatorUID", "PrivateInformation",
})
# attributes whose words may not appear in a kept descriptor (besides every PN)
_IDENTIFYING_KEYWORDS = frozenset({
    "PatientID", "OtherPatientIDs", "IssuerOfPatientID", "PatientAddress", "PatientTelephoneNumbers",
    "MedicalRecordLocator", "AccessionNumber", "StudyID", "AdmissionID", "RequestedProcedureID",
    "InstitutionName", "InstitutionAddress", "InstitutionalDepartmentName", "StationName", "DeviceSerialNumber",
    "PatientBirthName", "PatientMotherBirthName", "Occupation", "RegionOfResidence", "CountryOfResidence",
})
# markers of de-identification, removed again when a result is re-identified
_MARKERS = ("PatientIdentityRemoved", "DeidentificationMethod", "DeidentificationMethodCodeSequence",
            "LongitudinalTemporalInformationModified")

_CLEAN_CHARACTERS = re.compile(r"^[A-Za-z0-9 _\-+.,/()*:#&'\[\]]*$")
_LONG_NUMBER = re.compile(r"\d{5,}")
_DATE_LIKE = re.compile(r"\b\d{1,4}[./-]\d{1,2}[./-]\d{1,4}\b")
_TOKEN = re.compile(r"[A-Za-z0-9]+")
_DA = re.compile(r"^(\d{8})$")
_DT = re.compile(r"^(\d{8})(.*)$")


class DeidentificationError(ValueError):
    """The dataset cannot be de-identified by this profile (e.g. burned-in annotation)."""


class ReidentificationMap:
    """Replacement UIDs, pseudonyms and date shifts, recorded in SQLite; never leaves the PACS.

    Replacements are derived by HMAC-SHA256 under ``key``: the same original always gets the
    same replacement (across calls, processes and restarts), and without the key a replacement
    cannot be recomputed from a guessed original. The database file is created with mode 0600
    (its directory 0700); it holds the originals.

    Args:
        path: the SQLite file, e.g. ``$ONCOFLOW_HOME/deidentification/map.sqlite``.
        key: the secret, at least 16 bytes (e.g. :func:`oncoflow.security.pseudonyms.pseudonym_key`).
    """

    def __init__(self, path: Path, key: bytes) -> None:
        if len(key) < 16:
            raise ValueError("the de-identification key must be at least 16 bytes")
        self.path = Path(path)
        self._key = bytes(key)
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        descriptor = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        os.close(descriptor)
        os.chmod(self.path, 0o600)
        self._db = sqlite3.connect(self.path)
        with self._db:
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS uids (replacement TEXT PRIMARY KEY, original TEXT NOT NULL UNIQUE)"
            )
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS patients ("
                "pseudonym TEXT PRIMARY KEY, patient_id TEXT NOT NULL UNIQUE, patient_name TEXT)"
            )
        self._uids: dict[str, str] = {}

    def close(self) -> None:
        self._db.close()

    def _digest(self, purpose: str, value: str) -> bytes:
        return hmac.new(self._key, f"{purpose}\0{value}".encode(), hashlib.sha256).digest()

    def uid(self, original: str) -> str:
        """The replacement ``2.25.<128-bit integer>`` UID of ``original`` (recorded)."""
        cached = self._uids.get(original)
        if cached is not None:
            return cached
        replacement = f"2.25.{int.from_bytes(self._digest('uid', original)[:16], 'big')}"
        with self._db:
            self._db.execute("INSERT OR IGNORE INTO uids (replacement, original) VALUES (?, ?)",
                             (replacement, original))
        self._uids[original] = replacement
        return replacement

    def original_uid(self, replacement: str) -> str | None:
        """The original UID that ``replacement`` stands for, or None if it is not a recorded replacement."""
        row = self._db.execute("SELECT original FROM uids WHERE replacement = ?", (replacement,)).fetchone()
        return row[0] if row else None

    def patient(self, patient_id: str, patient_name: str | None = None) -> str:
        """The pseudonymous PatientID ``OF-XXXX-XXXX`` of ``patient_id`` (recorded, with the name if given)."""
        pseudonym = patient_pseudonym(patient_id, self._key)
        row = self._db.execute("SELECT patient_id FROM patients WHERE pseudonym = ?", (pseudonym,)).fetchone()
        if row and row[0] != patient_id:
            raise DeidentificationError(f"pseudonym collision between two patients on {pseudonym}")
        with self._db:
            self._db.execute("INSERT OR IGNORE INTO patients (pseudonym, patient_id) VALUES (?, ?)",
                             (pseudonym, patient_id))
            if patient_name:
                self._db.execute("UPDATE patients SET patient_name = ? WHERE pseudonym = ?", (patient_name, pseudonym))
        return pseudonym

    def original_patient(self, pseudonym: str) -> str | None:
        """The original PatientID behind ``pseudonym``, or None."""
        row = self._db.execute("SELECT patient_id FROM patients WHERE pseudonym = ?", (pseudonym,)).fetchone()
        return row[0] if row else None

    def original_patient_name(self, pseudonym: str) -> str | None:
        """The original PatientName recorded with ``pseudonym``, or None."""
        row = self._db.execute("SELECT patient_name FROM patients WHERE pseudonym = ?", (pseudonym,)).fetchone()
        return row[0] if row else None

    def date_shift_days(self, patient_id: str) -> int:
        """The patient's date shift in days, in -365..-1 (HMAC of the PatientID): the same for all studies."""
        return -1 - int.from_bytes(self._digest("date-shift", patient_id)[:8], "big") % SHIFT_RANGE_DAYS


def shift_date(value: str, days: int) -> str:
    """Shift a DA ``YYYYMMDD`` (or the date part of a DT) by ``days``; "" when it is not a valid date."""
    match = _DT.match(value.strip())
    if not match:
        return ""
    try:
        date = datetime.datetime.strptime(match.group(1), "%Y%m%d").date()
    except ValueError:
        return ""
    return (date + datetime.timedelta(days=days)).strftime("%Y%m%d") + match.group(2)


def identifying_words(ds: Dataset) -> set[str]:
    """Upper-case words (3+ characters) of the dataset's person names, IDs, institution and station."""
    words: set[str] = set()
    for element in _walk(ds):
        if element.VR == "SQ" or element.value is None:
            continue
        if element.VR == "PN" or element.keyword in _IDENTIFYING_KEYWORDS:
            values = element.value if isinstance(element.value, MultiValue | list) else [element.value]
            for value in values:
                words.update(token.upper() for token in _TOKEN.findall(str(value)) if len(token) >= 3)
    return words


def descriptor_is_clean(value: str, forbidden_words: set[str]) -> bool:
    """Whether a descriptor may be kept (Clean Descriptors Option).

    Clean means: only letters, digits, spaces and common punctuation; no run of 5 or more
    digits (an ID, a date); nothing shaped like a date; no word of ``forbidden_words``
    (the dataset's person names, IDs, institution and station words, see :func:`identifying_words`).
    """
    if not _CLEAN_CHARACTERS.match(value) or _LONG_NUMBER.search(value) or _DATE_LIKE.search(value):
        return False
    return not any(token.upper() in forbidden_words for token in _TOKEN.findall(value))


def _walk(ds: Dataset) -> Iterator[DataElement]:
    for element in ds:
        yield element
        if element.VR == "SQ" and element.value:
            for item in element.value:
                yield from _walk(item)


def _cap_age(value: str) -> str:
    match = re.fullmatch(r"(\d{3})([DWMY])", value.strip())
    if not match:
        return ""
    if match.group(2) == "Y" and int(match.group(1)) >= MAX_AGE_YEARS:
        return f"{MAX_AGE_YEARS:03d}Y"
    return value.strip()


def _keeps_uid(element: DataElement, value: str) -> bool:
    keyword = element.keyword
    if ACTIONS.get(keyword) == _U:
        return False
    return keyword.endswith(("ClassUID", "SyntaxUID")) or keyword in _KEPT_UID_KEYWORDS or value in UID_dictionary


def _map_values(element: DataElement, function: Any) -> None:
    if element.value is None or element.value == "":
        return
    if isinstance(element.value, MultiValue | list):
        element.value = [function(str(v)) for v in element.value]
    else:
        element.value = function(str(element.value))


class _Deidentifier:
    def __init__(self, mapping: ReidentificationMap, pseudonym: str, shift_days: int, forbidden: set[str]) -> None:
        self.mapping = mapping
        self.pseudonym = pseudonym
        self.shift_days = shift_days
        self.forbidden = forbidden

    def clean(self, ds: Dataset) -> None:
        for tag in list(ds.keys()):
            element = ds[tag]
            group = tag.group
            unknown = not element.keyword  # a public tag outside the dictionary: its meaning is unknown
            if tag.is_private or unknown or 0x5000 <= group <= 0x50FF or 0x6000 <= group <= 0x60FF:
                del ds[tag]
                continue
            action = ACTIONS.get(element.keyword)
            if action == _X:
                del ds[tag]
            elif action == _Z:
                element.value = DicomSequence() if element.VR == "SQ" else ""
            elif action == _D:
                if element.keyword == "PatientID":
                    element.value = self.pseudonym
                elif element.keyword == "PatientName":  # family name component only (not the retired form)
                    element.value = f"{self.pseudonym}^"
                elif element.VR == "PN":
                    element.value = "Deidentified"
                elif element.VR == "SQ":
                    del ds[tag]
                else:
                    element.value = DUMMY_TEXT
            elif action == _C:
                if not descriptor_is_clean(str(element.value or ""), self.forbidden):
                    del ds[tag]
            elif action == _A:
                _map_values(element, _cap_age)
            elif element.VR == "SQ":
                for item in element.value or []:
                    self.clean(item)
            elif element.VR == "UI":
                _map_values(element, lambda v, e=element: v if _keeps_uid(e, v) else self.mapping.uid(v))
            elif element.VR == "PN" and action != _K:
                element.value = ""
            elif element.VR in ("DA", "DT"):
                _map_values(element, lambda v: shift_date(v, self.shift_days))


def _method_code(value: str, meaning: str) -> Dataset:
    item = Dataset()
    item.CodeValue = value
    item.CodingSchemeDesignator = "DCM"
    item.CodeMeaning = meaning
    return item


def deidentify(ds: Dataset, mapping: ReidentificationMap) -> Dataset:
    """A de-identified copy of ``ds`` (``ds`` itself is not changed); see the module docstring.

    Raises:
        DeidentificationError: BurnedInAnnotation is "YES" (pixels would need cleaning).
    """
    if str(ds.get("BurnedInAnnotation", "")).upper() == "YES":
        raise DeidentificationError("burned-in annotation: the pixel data would need the Clean Pixel Data Option")
    out = copy.deepcopy(ds)
    patient_id = str(ds.get("PatientID", "") or "")
    pseudonym = mapping.patient(patient_id, str(ds.get("PatientName", "") or "") or None)
    deidentifier = _Deidentifier(mapping, pseudonym, mapping.date_shift_days(patient_id), identifying_words(ds))
    deidentifier.clean(out)
    out.PatientIdentityRemoved = "YES"
    out.DeidentificationMethod = DEIDENTIFICATION_METHOD
    out.DeidentificationMethodCodeSequence = DicomSequence([_method_code(*code) for code in METHOD_CODES])
    out.LongitudinalTemporalInformationModified = "MODIFIED"
    meta = getattr(out, "file_meta", None)
    if meta is not None:
        for keyword in _FILE_META_REMOVED:
            if keyword in meta:
                delattr(meta, keyword)
        if "SOPInstanceUID" in out:
            meta.MediaStorageSOPInstanceUID = out.SOPInstanceUID
        elif "MediaStorageSOPInstanceUID" in meta:
            meta.MediaStorageSOPInstanceUID = mapping.uid(str(meta.MediaStorageSOPInstanceUID))
    return out


def _reidentify_uids(ds: Dataset, mapping: ReidentificationMap) -> None:
    for element in ds:
        if element.VR == "SQ":
            for item in element.value or []:
                _reidentify_uids(item, mapping)
        elif element.VR == "UI":
            _map_values(element, lambda v: mapping.original_uid(v) or v)


def reidentify_references(ds: Dataset, mapping: ReidentificationMap) -> Dataset:
    """A copy of a result made on de-identified data, mapped back onto the originals.

    Every UID that is a recorded replacement (at any depth, file meta included) becomes its
    original again, so a SEG's ReferencedSeriesSequence, per-frame source image references,
    StudyInstanceUID and FrameOfReferenceUID point at the original images. PatientID and
    PatientName become the original ones, StudyDate is shifted back, and the de-identification
    markers (PatientIdentityRemoved, DeidentificationMethod..., LongitudinalTemporalInformationModified)
    are removed. UIDs the remote side created itself (the result's own SOP/Series Instance UIDs)
    are kept. AccessionNumber and StudyID, emptied on the way out, are not restored.
    """
    out = copy.deepcopy(ds)
    _reidentify_uids(out, mapping)
    meta = getattr(out, "file_meta", None)
    if meta is not None:
        _reidentify_uids(meta, mapping)
    pseudonym = str(out.get("PatientID", "") or "")
    patient_id = mapping.original_patient(pseudonym)
    if patient_id is not None:
        out.PatientID = patient_id
        out.PatientName = mapping.original_patient_name(pseudonym) or ""
        if out.get("StudyDate"):
            out.StudyDate = shift_date(str(out.StudyDate), -mapping.date_shift_days(patient_id))
        for keyword in _MARKERS:
            if keyword in out:
                delattr(out, keyword)
    return out
