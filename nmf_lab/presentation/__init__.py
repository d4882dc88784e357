"""Presentation: what a person reads (descriptions, figures, the report)."""
