"""Personal data and secrets in text, one engine for every stage: `detectors` (what a piece of
text holds: shapes, check digits, numbering plans, detect-secrets) and `identifiers` (the check
rules of cards, IBANs and national ids). The data check runs it on cells, `bastion code` on
notebook outputs, the guard on request fields and chat text."""
