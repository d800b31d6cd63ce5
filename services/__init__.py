"""What the session and the API talk to: the Gemini client and Live config, extraction, storage, FHIR
export, notifications (and, until they move into gemini_live/, some of the session's own parts)."""
