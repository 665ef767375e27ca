"""Security of the twin: signed requests, apps and users, tokens, the audit log, and the
standard data-exchange interface (seed 001 App. A). No HTTP here: ``gis_api`` calls these."""
