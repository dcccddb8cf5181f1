"""Adapters over the tools of the daily loop: Great Expectations (validation), DVC (versioning), MLflow
(registry), BentoML (packaging), and the promotion gate they feed."""
