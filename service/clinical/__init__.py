"""What clinical systems use: the CDS Hooks services and cards, the JWT check of their
clients, outbound FHIR reads and FHIR R4 resources read into a contract profile."""
