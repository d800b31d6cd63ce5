"""The staff API under /api: intakes to list, read, correct, review and export as FHIR."""
