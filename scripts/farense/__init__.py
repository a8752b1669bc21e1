"""Library code of the Farense QLoRA pipeline; the rule scripts in scripts/ are thin wrappers."""
