"""Use-case-agnostic MLOps platform: runtime, tables, data quality, registry, metrics, stages."""
