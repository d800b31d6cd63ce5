"""Record storage, patient notifications and insurance checks behind pluggable interfaces."""
