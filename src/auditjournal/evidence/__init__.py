"""Reading sealed evidence: verify, extract bundles, typed reimport."""
