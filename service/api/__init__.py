"""The public HTTP API: answers (single and batch), the form table, feedback, the patient
handout, health, the docs page, and what they share: problem+json errors, request parsing,
schemas, answer ids and the per-request deadline."""
